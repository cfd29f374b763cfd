-- wrk done() hook shared by the bench/api scripts: prints one JSON line
-- {"wrk": {requests, seconds, req_per_s, p50_ms, p90_ms, p99_ms,
-- p999_ms, max_ms, mean_ms, non2xx, errors_*}} on stdout (the same figures
-- wrk --latency prints, from its latency histogram, in milliseconds).
return function(summary, latency, _)
  local function ms(us) return us / 1000 end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"wrk":{"requests":%d,"seconds":%.3f,"req_per_s":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,'
      .. '"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"bytes":%d,"non2xx":%d,'
      .. '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d}}\n',
    summary.requests, secs, summary.requests / secs, ms(latency:percentile(50)),
    ms(latency:percentile(90)), ms(latency:percentile(99)), ms(latency:percentile(99.9)),
    ms(latency.max), ms(latency.mean), summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout))
end
