-- wrk script for bench/load.py --client wrk: POST to the endpoints in SHEQUN_WRK_MIX (lines of
-- "<body kind> <path> [header:value]", taken in turn; one line = one endpoint) with a distinct member per
-- request (members read from the file named by SHEQUN_WRK_MEMBERS, split between wrk's threads),
-- count answers per status, print them as one JSON line at the end (bench/load.py parses it).
-- Body kinds: member ({"member_id": m}), event (one activity event of m for POST /activity/events,
-- a fresh event id each), telegram (a Telegram Update: a group message from user m, fresh update_id).
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  members = {}
  local f = assert(io.open(os.getenv("SHEQUN_WRK_MEMBERS"), "r"))
  for line in f:lines() do members[#members + 1] = line end
  f:close()
  nthreads = tonumber(os.getenv("SHEQUN_WRK_THREADS"))
  idx = tid - 1
  c200, c202, c409, c4xx, c5xx, cother = 0, 0, 0, 0, 0, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SHEQUN_WRK_TOKEN")
  mix = {}
  for line in string.gmatch(os.getenv("SHEQUN_WRK_MIX"), "[^\n]+") do
    local kind, path, header = string.match(line, "^(%S+)%s+(%S+)%s*(%S*)$")
    mix[#mix + 1] = {kind = kind, path = path, header = header}
  end
  salt = os.getenv("SHEQUN_WRK_SALT") or "0"
  seq = 0
  turn = tid - 1
end

function request()
  local m = members[(idx % #members) + 1]
  idx = idx + nthreads
  local e = mix[(turn % #mix) + 1]
  turn = turn + 1
  seq = seq + 1
  local body
  if e.kind == "event" then
    body = '{"events": [{"platform": "manual", "event_id": "w' .. salt .. '-' .. tid .. '-' .. seq ..
      '", "kind": "message", "occurred_at": ' .. os.time() .. ', "member_id": ' .. m ..
      ', "payload": {"text": "早上好"}}]}'
  elseif e.kind == "telegram" then
    body = '{"update_id": ' .. (tid * 100000000 + seq) .. ', "message": {"message_id": ' .. seq ..
      ', "from": {"id": ' .. m .. ', "is_bot": false, "first_name": "m' .. m .. '"}, "chat": ' ..
      '{"id": -1001234567890, "title": "压测群", "type": "supergroup"}, "date": ' .. os.time() ..
      ', "text": "早上好"}}'
  else
    body = '{"member_id": ' .. m .. '}'
  end
  local headers = nil
  if e.header ~= "" then
    headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    local k, v = string.match(e.header, "^([^:]+):(.*)$")
    headers[k] = v
  end
  return wrk.format(nil, e.path, headers, body)
end

function response(status, headers, body)
  if status == 200 then c200 = c200 + 1
  elseif status == 202 then c202 = c202 + 1
  elseif status == 409 then c409 = c409 + 1
  elseif status >= 500 then c5xx = c5xx + 1
  elseif status >= 400 then c4xx = c4xx + 1
  else cother = cother + 1 end
end

function done(summary, latency, requests)
  local t = {c200 = 0, c202 = 0, c409 = 0, c4xx = 0, c5xx = 0, cother = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, ' ..
    '"socket_errors": %d, "timeouts": %d, "c200": %d, "c202": %d, "c409": %d, "c4xx": %d, "c5xx": %d, "cother": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.connect + e.read + e.write, e.timeout,
    t.c200, t.c202, t.c409, t.c4xx, t.c5xx, t.cother))
end
