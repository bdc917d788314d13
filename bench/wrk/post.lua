-- POST a fixed JSON body; stop after WRK_MAX_REQUESTS responses when set,
-- and print a machine-readable summary line for bench/gateway.py.
-- Environment: WRK_BODY (JSON), WRK_PATH, WRK_AUTH (bearer key), WRK_MAX_REQUESTS.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
wrk.path = os.getenv("WRK_PATH") or "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("WRK_AUTH") or "sk-bench")

-- pacing: each connection waits about WRK_DELAY_MS (uniform 0..2x, so the
-- connections do not march in step) before each request
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
if delay_ms > 0 then
  delay = function()
    return math.random() * 2 * delay_ms
  end
end

local max_requests = tonumber(os.getenv("WRK_MAX_REQUESTS") or "0")
local done_count = 0

if max_requests > 0 then
  -- one thread: the count is exact; with more threads each stops at its own count
  response = function(status, headers, body)
    done_count = done_count + 1
    if done_count >= max_requests then
      wrk.thread:stop()
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
