--- Saving the radio station as one file (`radio.save`; docs/protocol.md). The daemon answers
--- at once that the save started and writes the file in the background; `radio_saved` or
--- `radio_save_failed` ends it (exactly one, matched to the save by its path). A save outlives
--- its station, so these notifications are matched by path, not by the playing station.
local config = require("lofi.config")
local errors = require("lofi.errors")
local log = require("lofi.log")
local paths = require("lofi.paths")
local rpc = require("lofi.rpc")
local user = require("lofi.user")

local M = {}

---@class lofi.RadioSave
---@field cb? fun(err: lofi.Error?, result: table?)
---@field reply table the daemon's answer: {status = "saving", path, segments, first_index}

---@type table<string, lofi.RadioSave> saves started, by the path the daemon writes
local pending = {}

---@param err? lofi.Error
---@return boolean
local function quiet(err)
  return not err and not config.get().notify
end

--- The message for a finished save.
---@param result table the `radio_saved` params
---@return string
function M.describe(result)
  local text = string.format(
    "radio: saved %s (%.0f s, %d segments",
    tostring(result.path),
    tonumber(result.duration_sec) or 0,
    tonumber(result.segments) or 0
  )
  local first, missing = tonumber(result.first_index) or 0, tonumber(result.missing) or 0
  if first > 0 and missing == first then
    text = text .. string.format(", the first %d segments had left the cache", first)
  elseif first > 0 then
    text = text
      .. string.format(
        ", the first %d segments were left out: %d of them had left the cache",
        first,
        missing
      )
  end
  return text .. ")"
end

---@param save lofi.RadioSave
---@param err? lofi.Error
---@param result? table
local function finish(save, err, result)
  if save.cb then
    user.callback("radio.save()", save.cb, err, result)
  elseif err then
    user.notify_error(err)
  elseif not quiet() then
    user.notify(M.describe(assert(result)))
  end
end

--- Start saving the station so far. `path`: the file (".flac" or ".wav"; a leading `~` is the
--- home folder, a relative path is taken from the current folder); nil: the daemon's default.
--- `cb(err, result)` runs once, when the file is written (result: the `radio_saved` params) or
--- the save failed or could not start.
---@param path? string
---@param cb? fun(err: lofi.Error?, result: table?)
function M.start(path, cb)
  local params = path and { path = paths.absolute(path) } or {}
  rpc.request("radio.save", params, function(err, reply)
    if not err and (type(reply) ~= "table" or type(reply.path) ~= "string") then
      err = errors.new(errors.daemon.INTERNAL_ERROR, "radio.save: bad reply " .. vim.inspect(reply))
    end
    ---@type lofi.RadioSave
    local save = { cb = cb, reply = reply }
    if err then
      finish(save, err)
      return
    end
    pending[reply.path] = save
    log.info("radio: saving %s segments to %s", tostring(reply.segments), reply.path)
    if not cb and not quiet() then
      user.notify(string.format("radio: saving %s …", reply.path))
    end
  end)
end

--- The end of the save to `params.path`.
---@param params table
---@param err? lofi.Error
---@param result? table
local function save_ended(params, err, result)
  local path = params.path
  if type(path) ~= "string" then
    log.warn("radio save notification without a path: %s", vim.inspect(params))
    return
  end
  local save = pending[path]
  if save then
    pending[path] = nil
    finish(save, err, result)
    return
  end
  -- The daemon answers a save before it ends it, so this is a save whose reply timed out
  -- (the user was told so): say how it ended after all.
  finish({ reply = {} }, err, result)
end

--- Handlers of `radio_saved` and `radio_save_failed` (`lofi.routing` calls them).
---@type table<string, fun(params: table)>
M.handlers = {
  radio_saved = function(params)
    save_ended(params, nil, params)
  end,
  radio_save_failed = function(params)
    local code = tonumber(params.code) or errors.daemon.INTERNAL_ERROR
    local message = string.format("saving %s failed: %s", tostring(params.path), params.message)
    save_ended(params, errors.new(code, message, { data = { path = params.path } }))
  end,
}

--- The daemon ended: the saves it was writing fail (it removes an unfinished file).
---@param reason string
---@return integer failed how many saves were pending
function M.daemon_exited(reason)
  local saves = pending
  pending = {}
  local count = 0
  for path, save in pairs(saves) do
    count = count + 1
    local message = string.format("saving %s stopped: %s", path, reason)
    finish(save, errors.new(errors.client.DAEMON_EXITED, message))
  end
  return count
end

--- The paths of the saves running (tests, `:Lofi radio status`).
---@return string[]
function M.running()
  local list = vim.tbl_keys(pending)
  table.sort(list)
  return list
end

return M
