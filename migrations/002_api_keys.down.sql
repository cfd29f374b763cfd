DROP TABLE IF EXISTS chorus_api_keys;
