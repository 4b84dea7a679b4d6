--- The model installation started by `lofi.install()` (`:Lofi setup`): the `setup` request,
--- the download confirmation (sizes from the daemon's `setup_confirm`), progress messages,
--- `setup_*` events, and the callback, run exactly once. One installation at a time.
local config = require("lofi.config")
local errors = require("lofi.errors")
local events = require("lofi.events")
local rpc = require("lofi.rpc")
local user = require("lofi.user")

local M = {}

---@class lofi.SetupOpts
---@field backend? string "ace-step" (default) or "ace-step-1.5"; both can be installed
---@field checkpoint? string a local checkpoint folder (offline install, no download)
---@field force? boolean reinstall even when a valid installation is present
---@field precision? "auto"|"fp16"|"fp32" the graph set to export (auto: fp16 with a CUDA GPU)
---@field yes? boolean agree to the download without asking

---@class lofi.SetupJob
---@field opts lofi.SetupOpts
---@field cb? fun(err: lofi.Error?, result: table?)
---@field phase? string
---@field shown_percent number
---@field shown_at number
---@field last_progress? table

local DEFAULT_BACKEND = "ace-step"

---@type lofi.SetupJob? the installation in progress
local current = nil

--- Sizes in the confirmation prompt are in GB (decimal, as download sizes are quoted).
---@param count? number
---@return string
local function gigabytes(count)
  if type(count) ~= "number" then
    return "?"
  end
  return string.format("%.2f GB", count / 1e9)
end

--- End the installation in progress: run its callback once (or show an error nobody handles).
---@param err lofi.Error?
---@param result table?
local function finish(err, result)
  local job = current
  current = nil
  if not job then
    return
  end
  if job.cb then
    user.callback("install()", job.cb, err, result)
  elseif err then
    user.notify_error(err)
  end
end

--- Send `setup` for the job in progress.
---@param job lofi.SetupJob
---@param confirm boolean
local function request_setup(job, confirm)
  local params = { backend = job.opts.backend or DEFAULT_BACKEND, confirm = confirm }
  if job.opts.checkpoint then
    params.checkpoint = require("lofi.paths").absolute(job.opts.checkpoint)
  end
  if job.opts.force then
    params.force = true
  end
  if job.opts.precision then
    params.precision = job.opts.precision
  end
  rpc.request("setup", params, function(err)
    if err and current == job then
      finish(err, nil)
    end
  end)
end

--- Ask before downloading: the sizes come from the daemon's `setup_confirm`.
---@param job lofi.SetupJob
---@param params table
local function confirm_download(job, params)
  local prompt = string.format(
    "lofi.nvim: download %s and export about %s of ONNX models into %s? (%s free)",
    gigabytes(params.remaining_bytes),
    gigabytes(params.export_bytes),
    tostring(params.models_dir or "the model directory"),
    gigabytes(params.free_bytes)
  )
  local choices = { "Yes, download and install", "No" }
  vim.ui.select(choices, { prompt = prompt }, function(choice)
    if current ~= job then
      return
    end
    if choice == choices[1] then
      request_setup(job, true)
    else
      finish(
        errors.new(
          errors.daemon.SETUP_FAILED,
          "the download was declined; nothing was downloaded or installed",
          {
            remedy = string.format(
              "Run :Lofi setup %s again, or give a local checkpoint=DIR.",
              job.opts.backend or DEFAULT_BACKEND
            ),
          }
        ),
        nil
      )
    end
  end)
end

--- Show progress with vim.notify: at each new phase, then at most every 25 points or 5 seconds.
---@param job lofi.SetupJob
---@param params table
local function show_progress(job, params)
  local percent = tonumber(params.percent) or 0
  local now = vim.uv.now()
  local new_phase = params.phase ~= job.phase
  if not new_phase and percent < 100 and percent - job.shown_percent < 25 then
    if now - job.shown_at < 5000 then
      return
    end
  end
  job.phase, job.shown_percent, job.shown_at = params.phase, percent, now
  if config.get().notify then
    local message = params.message or ""
    user.notify(string.format("setup: %s %d%% %s", params.phase, math.floor(percent), message))
  end
end

--- Handlers of the daemon's `setup_*` notifications, by method (`lofi.routing` calls them for
--- notifications that carry a `backend`).
---@type table<string, fun(params: table)>
M.handlers = {
  setup_progress = function(params)
    if current then
      current.last_progress = params
      show_progress(current, params)
    end
    events.emit("setup_progress", params)
  end,
  setup_confirm = function(params)
    local job = current
    if not job then
      return
    end
    if job.opts.yes then
      request_setup(job, true)
    else
      confirm_download(job, params)
    end
  end,
  setup_complete = function(params)
    events.emit("setup_complete", params)
    finish(nil, params)
  end,
  setup_error = function(params)
    events.emit("setup_error", params)
    finish(errors.from_notification(params), nil)
  end,
  setup_cancelled = function(params)
    events.emit("setup_cancelled", params)
    finish(errors.new(errors.daemon.GENERATION_CANCELLED, "the setup was cancelled"), nil)
  end,
}

--- The daemon died: the installation in progress (if any) fails with DAEMON_EXITED, after a
--- `setup_error` event.
---@param reason string how the daemon ended
function M.fail(reason)
  if not current then
    return
  end
  local err = errors.new(errors.client.DAEMON_EXITED, reason)
  events.emit("setup_error", {
    backend = current.opts.backend or DEFAULT_BACKEND,
    code = err.code,
    name = err.name,
    message = err.message,
    remedy = err.remedy,
  })
  finish(err, nil)
end

--- Start an installation (see `lofi.install()`).
---@param opts? lofi.SetupOpts
---@param cb? fun(err: lofi.Error?, result: table?)
function M.start(opts, cb)
  opts = opts or {}
  if current then
    local err = errors.new(errors.daemon.SETUP_FAILED, "a setup is already running")
    if cb then
      cb(err, nil)
    else
      user.notify_error(err, vim.log.levels.WARN)
    end
    return
  end
  ---@type lofi.SetupJob
  local job = { opts = opts, cb = cb, shown_percent = -100, shown_at = 0 }
  current = job
  request_setup(job, opts.yes == true)
end

--- Ask the daemon to cancel its installation (see `lofi.cancel_install()`).
---@param cb? fun(err: lofi.Error?, cancelled: boolean?)
function M.cancel(cb)
  rpc.request("setup.cancel", nil, function(err, result)
    if cb then
      cb(err, type(result) == "table" and result.cancelled == true)
    elseif err then
      user.notify_error(err, vim.log.levels.WARN)
    end
  end)
end

---@return table? params the last `setup_progress` of the installation in progress
function M.progress()
  return current and current.last_progress or nil
end

--- True while an installation started by `start()` has not ended.
---@return boolean
function M.running()
  return current ~= nil
end

return M
