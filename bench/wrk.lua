-- wrk script for bench/run.py: sends the requests listed in a file, and prints one JSON line of
-- results (requests, errors, status classes, latency percentiles) when the run is done.
--
--   wrk -t1 -c8 -d15s -s bench/wrk.lua http://127.0.0.1:8000 -- requests.tsv
--
-- Each line of the file is one request: method, path, body (may be empty) and then headers
-- ("Name: value"), separated by tabs. Each thread takes every n-th line (n = the number of
-- threads, so no two threads send the same request of a pool) and sends its lines in turn,
-- starting over when it has sent them all; `laps` counts the restarts.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

local function split(line)
   local fields = {}
   for field in (line .. "\t"):gmatch("([^\t]*)\t") do
      table.insert(fields, field)
   end
   return fields
end

local requests = {}
local position = 0

-- Per-thread counters, globals so that done() can read them with thread:get().
s1, s2, s3, s4, s5, laps = 0, 0, 0, 0, 0, 0

function init(args)
   local stride = tonumber(args[2])
   local index = 0
   for line in io.lines(args[1]) do
      if line ~= "" then
         if index % stride == id then
            local fields = split(line)
            local headers = {}
            for i = 4, #fields do
               local name, value = fields[i]:match("^([^:]+):%s*(.*)$")
               headers[name] = value
            end
            local body = fields[3] ~= "" and fields[3] or nil
            table.insert(requests, wrk.format(fields[1], fields[2], headers, body))
         end
         index = index + 1
      end
   end
   assert(#requests > 0, "no requests for thread " .. id)
end

function request()
   position = position + 1
   if position > #requests then
      position = 1
      laps = laps + 1
   end
   return requests[position]
end

function response(status, headers, body)
   if status < 200 then s1 = s1 + 1
   elseif status < 300 then s2 = s2 + 1
   elseif status < 400 then s3 = s3 + 1
   elseif status < 500 then s4 = s4 + 1
   else s5 = s5 + 1 end
end

function done(summary, latency, _)
   local total = { s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, laps = 0 }
   for _, thread in ipairs(threads) do
      for name, _ in pairs(total) do
         total[name] = total[name] + (thread:get(name) or 0)
      end
   end
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "laps": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"status": {"1xx": %d, "2xx": %d, "3xx": %d, "4xx": %d, "5xx": %d}, '
         .. '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}}\n',
      summary.requests, summary.duration, summary.bytes, total.laps,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      total.s1, total.s2, total.s3, total.s4, total.s5,
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99)
   ))
end
