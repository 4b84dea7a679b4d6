--- What reaches the user directly: "[lofi]" messages, and the user's own callbacks, run so
--- that an error they raise is logged and shown, never propagated into the plugin.
local errors = require("lofi.errors")
local log = require("lofi.log")

local M = {}

--- Show a message with `vim.notify`, prefixed with "[lofi] ".
---@param msg string
---@param level? integer a `vim.log.levels` value (default INFO)
function M.notify(msg, level)
  vim.notify("[lofi] " .. msg, level or vim.log.levels.INFO)
end

--- Show an error (`errors.format`: name, message and remedy).
---@param err lofi.Error
---@param level? integer default ERROR
function M.notify_error(err, level)
  M.notify(errors.format(err), level or vim.log.levels.ERROR)
end

--- Run a user callback; an error it raises is logged and shown, never propagated.
---@param what string the API function whose callback this is, for the message
---@param cb fun(err: lofi.Error?, result: any)
---@param err lofi.Error?
---@param result any
function M.callback(what, cb, err, result)
  local ok, cb_err = pcall(cb, err, result)
  if not ok then
    log.error("the %s callback failed: %s", what, cb_err)
    local message = string.format("the %s callback failed: %s", what, tostring(cb_err))
    M.notify(message, vim.log.levels.ERROR)
  end
end

--- Run `fn()`, side effects of a plugin event (events, windows, messages): an error it raises
--- is logged and shown, never propagated, so the work that follows it (the callbacks) runs.
---@param what string the event, for the message
---@param fn fun()
function M.protect(what, fn)
  local ok, err = pcall(fn)
  if not ok then
    log.error("%s failed: %s", what, err)
    M.notify(string.format("%s failed: %s", what, tostring(err)), vim.log.levels.ERROR)
  end
end

return M
