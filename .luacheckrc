-- luacheck (Debian's lua-check), run by the test command over every Lua
-- file of the repository: LuaJIT's globals, no globals of our own (a
-- module returns a table), busted's in specs.
std = "luajit"
max_line_length = 130
exclude_files = { "build*/**", "tests/browser/node_modules/**" }
-- specs quote data (logs, records, messages) on long lines
files["spec/**/*.lua"] = { std = "+busted", max_line_length = 200 }
-- busted's runner reads the command line from the global arg
files["lua/chorus/cli/test.lua"] = { read_globals = { "arg" } }
unused_args = false -- callbacks keep their whole documented signature
-- wrk's scripts talk to wrk through globals (its Lua API)
files["bench/api/*.lua"] = { globals = { "wrk", "done", "request", "response", "setup", "init" } }
-- LuaLS annotations: the classes exist for the editor, not to be read
files["types/chorus.lua"] = { ignore = { "241" }, max_line_length = false }
