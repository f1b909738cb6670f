-- wrk script of the sessiongate load harness: a browser-like GET whose session cookie is picked
-- from a file of cookie values, uniformly or Zipf-distributed (s = 1), or walked in order
-- (to warm a cache). Configured through the environment, set by benches/load/harness.py:
--   SG_COOKIES   file with one cookie value per line (absent: no session cookie is sent)
--   SG_PICK      uniform | zipf | walk (each thread walks its share in order, wrapping around;
--                the harness stops wrk once the store has seen every session)
--   SG_PATH      request path (default "/")
--   SG_THREADS   wrk's thread count (walk: thread k takes every k-th cookie from the k-th)
-- At the end it prints one line "SG_RESULT key=value ..." for the harness to read.
--
-- A million cookies stay out of the garbage collector's way: they are kept as one string of
-- fixed-width lines and the Zipf table is an FFI array, so that no collection cycle has to walk
-- a million-entry table (which shows up as wrk's own pauses in the latency tail).

local ffi = require("ffi")

local counter = 0

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

-- Every line of the cookie file is one cookie value of a fixed width (the signed value the
-- proxy issues) and a newline; the width is taken from the first line.
local LINE = 0
local cookies = ""
local count = 0
local pick
local position
local stride
local cdf
local path = os.getenv("SG_PATH") or "/"
local headers = {
  ["Host"] = "app.example.com",
  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
  ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
  ["Accept-Language"] = "en-GB,en;q=0.9",
  ["Accept-Encoding"] = "gzip, deflate, br",
  ["Referer"] = "https://app.example.com/reports",
  ["Sec-Fetch-Dest"] = "document",
  ["Sec-Fetch-Mode"] = "navigate",
  ["Sec-Fetch-Site"] = "same-origin",
  ["X-Forwarded-For"] = "203.0.113.7",
}

-- Zipf with exponent 1 over ranks 1..n: cumulative weights, searched by bisection.
local function zipf_cdf(n)
  local c = ffi.new("double[?]", n + 1)
  local total = 0
  for k = 1, n do
    total = total + 1 / k
    c[k] = total
  end
  for k = 1, n do
    c[k] = c[k] / total
  end
  return c
end

local function zipf_rank()
  local u = math.random()
  local lo, hi = 1, count
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function init(args)
  local file = os.getenv("SG_COOKIES")
  if file and file ~= "" then
    local f = assert(io.open(file, "rb"))
    cookies = f:read("*a")
    f:close()
    local newline = cookies:find("\n", 1, true)
    assert(newline and newline > 1, file .. ": no cookie value on the first line")
    LINE = newline
    count = math.floor(#cookies / LINE)
    assert(count * LINE == #cookies, file .. ": every line must be a cookie value of "
      .. (LINE - 1) .. " characters")
  end
  pick = os.getenv("SG_PICK") or "uniform"
  local index = tonumber(wrk.thread:get("index")) or 0
  stride = tonumber(os.getenv("SG_THREADS")) or 1
  position = index + 1
  math.randomseed(os.time() + index * 7919)
  if pick == "zipf" and count > 0 then
    cdf = zipf_cdf(count)
  end
end

function request()
  if count > 0 then
    local i
    if pick == "walk" then
      i = (position - 1) % count + 1
      position = position + stride
    elseif pick == "zipf" then
      i = zipf_rank()
    else
      i = math.random(count)
    end
    local at = (i - 1) * LINE
    headers["Cookie"] = "theme=dark; __Host-sid=" .. cookies:sub(at + 1, at + LINE - 1) .. "; lang=en"
  else
    headers["Cookie"] = "theme=dark; lang=en"
  end
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "SG_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
