-- luacheck (Debian's lua-check), run by the test command over every Lua
-- file of the repository: LuaJIT's globals, no globals of our own (a
-- module returns a table), busted's in specs.
std = "luajit"
max_line_length = 130
exclude_files = { "build*/**", "tests/browser/node_modules/**" }
files["spec/**/*.lua"] = { std = "+busted" }
-- busted's runner reads the command line from the global arg
files["lua/chorus/cli/test.lua"] = { read_globals = { "arg" } }
unused_args = false -- callbacks keep their whole documented signature
