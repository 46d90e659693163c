-- wrk script (W2): POST /tasks/ with a fresh random 32-char input per request,
-- authenticated with the bearer token in $BENCH_TOKEN (none when it is unset).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local path = os.getenv("BENCH_POST_PATH") or "/tasks/"

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local t = {}
  for i = 1, 32 do
    local k = math.random(1, #chars)
    t[i] = chars:sub(k, k)
  end
  return wrk.format(nil, path, nil, '{"input_data":"' .. table.concat(t) .. '"}')
end
