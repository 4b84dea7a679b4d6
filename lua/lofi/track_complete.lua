--- Completion of `:Lofi play`: the cached tracks' ids and prompts, from the daemon's
--- `tracks.list`. Completion cannot wait for long: the list is asked for with a short timeout
--- and awaited for at most `WAIT_MS`; when it is late, the last list seen (or nothing) is used,
--- and the answer, whenever it comes, serves the next <Tab>.
local rpc = require("lofi.rpc")

local M = {}

--- How long a <Tab> waits for the daemon's answer.
M.WAIT_MS = 400
--- How long the request itself may take (a daemon that is starting).
local REQUEST_TIMEOUT_MS = 5000

---@type string[] candidates from the last answer
local last = {}
local in_flight = false

--- A prompt as one command-line argument: spaces and backslashes escaped, as `:Lofi`'s
--- argument splitting reads them back.
---@param prompt string
---@return string
local function escape(prompt)
  return (prompt:gsub("[%c]+", " "):gsub("\\", "\\\\"):gsub(" ", "\\ "))
end

---@param tracks any
---@return string[]
local function candidates(tracks)
  local items, seen = {}, {}
  local function add(item)
    if item ~= "" and not seen[item] then
      seen[item] = true
      items[#items + 1] = item
    end
  end
  for _, track in ipairs(type(tracks) == "table" and tracks or {}) do
    if type(track) == "table" then
      if type(track.prompt) == "string" then
        add(escape(track.prompt))
      end
      if type(track.track_id) == "string" then
        add(track.track_id)
      end
    end
  end
  return items
end

--- The candidates for `:Lofi play <Tab>`, most recently used tracks first.
---@return string[]
function M.candidates()
  local done = false
  if not in_flight then
    in_flight = true
    rpc.request("tracks.list", nil, function(err, result)
      in_flight = false
      done = true
      if not err and type(result) == "table" then
        last = candidates(result.tracks)
      end
    end, { timeout_ms = REQUEST_TIMEOUT_MS })
  end
  vim.wait(M.WAIT_MS, function()
    return done
  end, 10)
  return last
end

return M
