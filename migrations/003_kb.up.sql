-- 003_kb: the knowledge base the kb agent searches (chorus kb import).
-- A document is one imported file of a collection; its chunks are the
-- pieces search returns: split by heading and size, each with a weighted
-- tsvector (title and heading path weight A, text B) under a GIN index,
-- and, when the import was given an embeddings model, its embedding as
-- real[] (Debian 12 has no pgvector: cosine re-ranking of the full-text
-- candidates is done in SQL over these arrays).
CREATE TABLE kb_documents (
    id            bigserial PRIMARY KEY,
    collection    text NOT NULL,
    source_path   text NOT NULL,          -- relative to the imported directory
    title         text NOT NULL,
    content_hash  text NOT NULL,          -- sha256 of the file's bytes
    bytes         integer NOT NULL,
    language      regconfig NOT NULL,     -- text search configuration of its tsvectors
    chunking      text NOT NULL,          -- how it was cut (re-import re-cuts when it changes)
    embedding_model text,                 -- model of its chunks' embeddings; NULL: none
    chunk_count   integer NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, source_path)
);

CREATE TABLE kb_chunks (
    id          bigserial PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
    position    integer NOT NULL,         -- 0-based order in the document
    heading     text,                     -- "Title > Section > Subsection"
    content     text NOT NULL,
    tsv         tsvector NOT NULL,
    embedding   real[],
    UNIQUE (document_id, position)
);

CREATE INDEX kb_chunks_tsv ON kb_chunks USING gin (tsv);
