-- wrk script for bench/scoring_http.py: POSTs one body file, prints the figures as one JSON line.
--   WRK_BODY           file whose bytes are the request body
--   WRK_CONTENT_TYPE   Content-Type (default application/json)
--   WRK_HEADER_LENGTH  Inference-Header-Content-Length, for a v2 binary tensor request
local f = assert(io.open(os.getenv("WRK_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"
local header_length = os.getenv("WRK_HEADER_LENGTH")
if header_length and header_length ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = header_length
end

-- no response() function: with one, wrk hands every response to Lua, which costs it more than the
-- servers under test; errors.status counts the answers that were not 2xx or 3xx
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
