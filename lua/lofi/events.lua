--- Events: Lua subscribers (`on`) and the matching `User` autocmds, fired together.
local log = require("lofi.log")

local M = {}

--- Event names and their `User` autocmd patterns.
---@type table<lofi.EventName, string>
M.patterns = {
  generation_start = "LofiGenerationStart",
  generation_progress = "LofiGenerationProgress",
  generation_complete = "LofiGenerationComplete",
  generation_error = "LofiGenerationError",
  generation_cancelled = "LofiGenerationCancelled",
  daemon_exit = "LofiDaemonExit",
  setup_progress = "LofiSetupProgress",
  setup_complete = "LofiSetupComplete",
  setup_error = "LofiSetupError",
  setup_cancelled = "LofiSetupCancelled",
  radio_start = "LofiRadioStart",
  radio_segment = "LofiRadioSegment",
  radio_stop = "LofiRadioStop",
  radio_starved = "LofiRadioStarved",
}

---@type table<string, table<integer, fun(data: table)>>
local subscribers = {}
local next_id = 0

---@return string[]
function M.names()
  local names = vim.tbl_keys(M.patterns)
  table.sort(names)
  return names
end

--- Subscribe to an event; returns a function that unsubscribes.
---@param event lofi.EventName
---@param fn fun(data: table)
---@return fun() unsubscribe
function M.on(event, fn)
  if M.patterns[event] == nil then
    local valid = table.concat(M.names(), ", ")
    error(string.format("lofi.on: unknown event %q (valid: %s)", tostring(event), valid), 2)
  end
  if type(fn) ~= "function" then
    error("lofi.on: the handler must be a function, got " .. type(fn), 2)
  end
  next_id = next_id + 1
  local id = next_id
  subscribers[event] = subscribers[event] or {}
  subscribers[event][id] = fn
  return function()
    if subscribers[event] then
      subscribers[event][id] = nil
    end
  end
end

--- Run the subscribers of `event` (each protected, in subscription order), then fire the
--- `User` autocmd with the same data.
---@param event lofi.EventName
---@param data table
function M.emit(event, data)
  local handlers = subscribers[event] or {}
  local ids = vim.tbl_keys(handlers)
  table.sort(ids)
  for _, id in ipairs(ids) do
    local fn = handlers[id]
    if fn then
      local ok, err = pcall(fn, data)
      if not ok then
        log.error("a %s handler failed: %s", event, err)
        vim.notify(
          string.format("[lofi] a %s handler failed: %s", event, err),
          vim.log.levels.ERROR
        )
      end
    end
  end
  local ok, err = pcall(vim.api.nvim_exec_autocmds, "User", {
    pattern = M.patterns[event],
    data = data,
    modeline = false,
  })
  if not ok then
    log.error("User %s autocmd failed: %s", M.patterns[event], err)
    vim.notify(
      string.format("[lofi] User %s autocmd failed: %s", M.patterns[event], err),
      vim.log.levels.ERROR
    )
  end
end

--- Drop every subscriber (tests).
function M.clear()
  subscribers = {}
end

return M
