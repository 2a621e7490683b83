-- Lua's LuaSocket socket.http for compat/run-compat.
--
-- usage: lua5.4 luaclient.lua URL...   (or: version)
--
-- socket.http.request with its defaults (one connection per request, it
-- sends "Connection: close"). Prints per request:
--   RESULT <i> <status> <body length> <md5 of body>   (md5 by the harness:
--   the body is written in hex, see below)
--   ERROR <i> <message>
local http = require("socket.http")
local ltn12 = require("ltn12")
if arg[1] == "version" then
  print((require("socket"))._VERSION .. ", " .. _VERSION)
  os.exit(0)
end
http.TIMEOUT = 300
for i = 1, #arg do
  local t = {}
  local ok, code = http.request{url = arg[i], sink = ltn12.sink.table(t)}
  if not ok then
    print("ERROR " .. i .. " " .. tostring(code))
  else
    local b = table.concat(t)
    -- no md5 in Lua's standard library: hand the body over in hex
    print("RESULTHEX " .. i .. " " .. tostring(code) .. " " .. (b:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
  end
end
