--- lofi.nvim: generate lofi music with a local model and play it, without blocking the editor.
---
--- The public Lua API. Generations are tracked here: every `generate()` callback runs exactly
--- once (complete, error, cancel, or the daemon dying), and every daemon notification becomes
--- an event (see `lofi.events`).
local config = require("lofi.config")
local errors = require("lofi.errors")
local events = require("lofi.events")
local log = require("lofi.log")

local M = {}

---@class lofi.Waiter
---@field cb? fun(err: lofi.Error?, track: lofi.Track?)
---@field play? boolean
---@field done boolean

---@class lofi.Generation
---@field track_id? string
---@field prompt string
---@field status "requesting"|"queued"|"running"
---@field position? integer
---@field percent number
---@field phase? string
---@field step? integer
---@field total_steps? integer
---@field eta_sec? number
---@field waiters lofi.Waiter[]
---@field cancel_requested boolean

local state = {
  ---@type lofi.Generation[] requests sent, not answered yet
  requesting = {},
  ---@type table<string, lofi.Generation> accepted generations by track id
  by_track = {},
  ---@type string[] accepted track ids, oldest first
  order = {},
  ---@type lofi.Track?
  last_track = nil,
  ---@type lofi.SetupJob? the model installation in progress
  setup = nil,
}

---@class lofi.SetupOpts
---@field backend? string default "ace-step"
---@field checkpoint? string a local checkpoint folder (offline install, no download)
---@field force? boolean reinstall even when a valid installation is present
---@field yes? boolean agree to the download without asking

---@class lofi.SetupJob
---@field opts lofi.SetupOpts
---@field cb? fun(err: lofi.Error?, result: table?)
---@field phase? string
---@field shown_percent number
---@field shown_at number

---@param msg string
---@param level? integer
local function notify(msg, level)
  vim.notify("[lofi] " .. msg, level or vim.log.levels.INFO)
end

--- Run a user callback; an error it raises is logged and shown, never propagated.
---@param what string the API function whose callback this is, for the message
---@param cb fun(err: lofi.Error?, result: any)
---@param err lofi.Error?
---@param result any
local function call_user(what, cb, err, result)
  local ok, cb_err = pcall(cb, err, result)
  if not ok then
    log.error("the %s callback failed: %s", what, cb_err)
    local message = string.format("the %s callback failed: %s", what, tostring(cb_err))
    notify(message, vim.log.levels.ERROR)
  end
end

--- Run a waiter's callback once; an error nobody handles is shown to the user.
---@param waiter lofi.Waiter
---@param err lofi.Error?
---@param track lofi.Track?
local function finish(waiter, err, track)
  if waiter.done then
    return
  end
  waiter.done = true
  if waiter.cb then
    call_user("generate()", waiter.cb, err, track)
  elseif err and err.code ~= errors.daemon.GENERATION_CANCELLED then
    notify(errors.format(err), vim.log.levels.ERROR)
  end
end

---@return lofi.Generation? running
---@return integer queued how many others wait
local function current_generation()
  local running, first, count = nil, nil, 0
  for _, track_id in ipairs(state.order) do
    local gen = state.by_track[track_id]
    if gen then
      count = count + 1
      if gen.status == "running" then
        running = gen
      elseif not first then
        first = gen
      end
    end
  end
  local shown = running or first or state.requesting[1]
  local total = count + #state.requesting
  return shown, shown and math.max(total - 1, 0) or 0
end

local function refresh_progress()
  local progress = require("lofi.progress")
  local gen, queued = current_generation()
  if not gen then
    progress.close()
    return
  end
  progress.update({
    prompt = gen.prompt,
    status = gen.status == "running" and "running" or "queued",
    percent = gen.percent,
    phase = gen.phase,
    step = gen.step,
    total_steps = gen.total_steps,
    eta_sec = gen.eta_sec,
    position = gen.position,
    queued = queued,
  })
end

---@param track_id string
---@return lofi.Generation?
local function remove(track_id)
  local gen = state.by_track[track_id]
  state.by_track[track_id] = nil
  for i, id in ipairs(state.order) do
    if id == track_id then
      table.remove(state.order, i)
      break
    end
  end
  return gen
end

---@param gen lofi.Generation?
---@param track lofi.Track
local function maybe_autoplay(gen, track)
  local wanted = config.get().player.autoplay
  if gen then
    for _, waiter in ipairs(gen.waiters) do
      if waiter.play ~= nil then
        wanted = waiter.play
        break
      end
    end
  end
  if not wanted then
    return
  end
  local _, err = require("lofi.player").play(track)
  if err then
    notify(errors.format(err), vim.log.levels.WARN)
  end
end

---@type table<string, fun(params: table)>
local on_notification = {
  generation_start = function(params)
    local gen = state.by_track[params.track_id]
    if gen then
      gen.status = "running"
      gen.percent = 0
    end
    events.emit("generation_start", params)
    refresh_progress()
  end,
  generation_progress = function(params)
    local gen = state.by_track[params.track_id]
    if gen then
      gen.status = "running"
      gen.percent = params.percent or gen.percent
      gen.phase, gen.step, gen.total_steps = params.phase, params.step, params.total_steps
      gen.eta_sec = params.eta_sec
    end
    events.emit("generation_progress", params)
    refresh_progress()
  end,
  generation_complete = function(params)
    local gen = remove(params.track_id)
    ---@type lofi.Track
    local track = params
    state.last_track = track
    events.emit("generation_complete", track)
    refresh_progress()
    if config.get().notify then
      local name = track.prompt or track.track_id
      notify(string.format("ready: %s (%.0f s)", name, track.duration_sec or 0))
    end
    maybe_autoplay(gen, track)
    for _, waiter in ipairs(gen and gen.waiters or {}) do
      finish(waiter, nil, track)
    end
  end,
  generation_error = function(params)
    local gen = remove(params.track_id)
    local err = errors.from_notification(params)
    events.emit("generation_error", params)
    refresh_progress()
    for _, waiter in ipairs(gen and gen.waiters or {}) do
      finish(waiter, err, nil)
    end
  end,
  generation_cancelled = function(params)
    local gen = remove(params.track_id)
    events.emit("generation_cancelled", params)
    refresh_progress()
    if config.get().notify then
      notify("cancelled: " .. (gen and gen.prompt or params.track_id))
    end
    local err = errors.new(
      errors.daemon.GENERATION_CANCELLED,
      "the generation was cancelled",
      { track_id = params.track_id }
    )
    for _, waiter in ipairs(gen and gen.waiters or {}) do
      finish(waiter, err, nil)
    end
  end,
}

--- Sizes in the confirmation prompt are in GB (decimal, as download sizes are quoted).
---@param count? number
---@return string
local function gigabytes(count)
  if type(count) ~= "number" then
    return "?"
  end
  return string.format("%.2f GB", count / 1e9)
end

--- End the setup in progress: run its callback once (or show an error nobody handles).
---@param err lofi.Error?
---@param result table?
local function finish_setup(err, result)
  local job = state.setup
  state.setup = nil
  if not job then
    return
  end
  if job.cb then
    call_user("install()", job.cb, err, result)
  elseif err then
    notify(errors.format(err), vim.log.levels.ERROR)
  end
end

--- Send `setup` for the job in progress.
---@param job lofi.SetupJob
---@param confirm boolean
local function request_setup(job, confirm)
  local params = { backend = job.opts.backend or "ace-step", confirm = confirm }
  if job.opts.checkpoint then
    params.checkpoint = vim.fn.fnamemodify(vim.fn.expand(job.opts.checkpoint), ":p")
  end
  if job.opts.force then
    params.force = true
  end
  require("lofi.rpc").request("setup", params, function(err)
    if err and state.setup == job then
      finish_setup(err, nil)
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
    if state.setup ~= job then
      return
    end
    if choice == choices[1] then
      request_setup(job, true)
    else
      finish_setup(
        errors.new(
          errors.daemon.SETUP_FAILED,
          "the download was declined; nothing was downloaded or installed",
          { remedy = "Run :Lofi setup ace-step again, or give a local checkpoint=DIR." }
        ),
        nil
      )
    end
  end)
end

--- Show setup progress with vim.notify: at each new phase, then at most every 25 points or
--- 5 seconds.
---@param job lofi.SetupJob
---@param params table
local function show_setup_progress(job, params)
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
    notify(string.format("setup: %s %d%% %s", params.phase, math.floor(percent), message))
  end
end

---@type table<string, fun(params: table)>
local on_setup_notification = {
  setup_progress = function(params)
    local job = state.setup
    if job then
      show_setup_progress(job, params)
    end
    events.emit("setup_progress", params)
  end,
  setup_confirm = function(params)
    local job = state.setup
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
    finish_setup(nil, params)
  end,
  setup_error = function(params)
    events.emit("setup_error", params)
    finish_setup(errors.from_notification(params), nil)
  end,
  setup_cancelled = function(params)
    events.emit("setup_cancelled", params)
    finish_setup(errors.new(errors.daemon.GENERATION_CANCELLED, "the setup was cancelled"), nil)
  end,
}

---@param proc lofi.Daemon
local function on_daemon_exit(proc)
  local client = require("lofi.client")
  local reason = client.exit_reason(proc)
  events.emit("daemon_exit", {
    pid = proc.pid,
    code = proc.exit_code,
    signal = proc.exit_signal,
    expected = proc.stopping,
    reason = reason,
  })
  local ids = state.order
  state.order = {}
  for _, track_id in ipairs(ids) do
    local gen = state.by_track[track_id]
    state.by_track[track_id] = nil
    if gen then
      local err = errors.new(errors.client.DAEMON_EXITED, reason, { track_id = track_id })
      events.emit("generation_error", {
        track_id = track_id,
        code = err.code,
        name = err.name,
        message = err.message,
        remedy = err.remedy,
      })
      for _, waiter in ipairs(gen.waiters) do
        finish(waiter, err, nil)
      end
    end
  end
  refresh_progress()
  if state.setup then
    local err = errors.new(errors.client.DAEMON_EXITED, reason)
    events.emit("setup_error", {
      backend = state.setup.opts.backend or "ace-step",
      code = err.code,
      name = err.name,
      message = err.message,
      remedy = err.remedy,
    })
    finish_setup(err, nil)
  end
  if not proc.stopping and #ids == 0 then
    notify(reason, vim.log.levels.WARN)
  end
end

require("lofi.rpc").set_handlers({
  notification = function(method, params)
    local handler = on_notification[method]
    local setup_handler = on_setup_notification[method]
    if handler and type(params.track_id) == "string" then
      handler(params)
    elseif setup_handler and type(params.backend) == "string" then
      setup_handler(params)
    else
      log.debug("ignoring notification %s", method)
    end
  end,
  exit = on_daemon_exit,
})

--- Create the "Lofi" augroup (cleared first, so this is safe to repeat).
local function create_autocmds()
  local group = vim.api.nvim_create_augroup("Lofi", { clear = true })
  vim.api.nvim_create_autocmd("VimLeavePre", {
    group = group,
    desc = "lofi.nvim: stop the player and the daemon",
    callback = function()
      M.shutdown()
    end,
  })
  vim.api.nvim_create_autocmd("VimResized", {
    group = group,
    desc = "lofi.nvim: move the progress window",
    callback = function()
      refresh_progress()
    end,
  })
end

--- Configure lofi.nvim. Optional: the defaults apply without it. Raises an error naming the
--- first invalid option. Safe to call again (each call starts from the defaults; a running
--- daemon whose options changed is stopped and starts again on next use).
---@param opts? lofi.UserConfig
function M.setup(opts)
  if vim.fn.has("nvim-0.10") ~= 1 then
    notify("lofi.nvim needs Neovim 0.10 or newer", vim.log.levels.ERROR)
    return
  end
  local previous = vim.deepcopy(config.get().daemon)
  local cfg = config.setup(opts)
  log.set_level(cfg.log.level)
  create_autocmds()
  if not vim.deep_equal(previous, cfg.daemon) then
    require("lofi.client").reset_backoff()
    require("lofi.rpc").shutdown()
  end
end

-- The daemon parameter each generate() option becomes.
local param_names = {
  prompt = "prompt",
  duration = "duration_sec",
  seed = "seed",
  steps = "infer_steps",
  scheduler = "scheduler",
  guidance_scale = "guidance_scale",
  format = "format",
  priority = "priority",
  backend = "backend",
}

--- Check generate() options (against the `generate` schema in `lofi.config`) and turn them
--- into daemon parameters, unset ones taken from the `generate` defaults.
---@param opts lofi.GenerateOpts|string
---@return table? params
---@return lofi.Error? err INVALID_OPTION naming the option
local function generate_params(opts)
  if type(opts) == "string" then
    opts = { prompt = opts }
  end
  if type(opts) ~= "table" then
    return nil,
      errors.new(
        errors.client.INVALID_OPTION,
        "generate() takes a prompt or a table of options, got " .. type(opts)
      )
  end
  local problem = config.check_generate(opts)
  if problem then
    return nil, errors.new(errors.client.INVALID_OPTION, problem)
  end
  local defaults = config.get().generate
  local params = {}
  for name, key in pairs(param_names) do
    local value = opts[name]
    if value == nil then
      value = defaults[name]
    end
    params[key] = value
  end
  if vim.trim(params.prompt) == "" then
    return nil, errors.new(errors.client.INVALID_OPTION, "`prompt` must not be empty")
  end
  return params, nil
end

--- Generate a track. `cb(err, track)` runs exactly once: with the track when it is ready,
--- or with an error (the daemon's, GENERATION_CANCELLED, or DAEMON_EXITED if the daemon dies).
--- Without `cb`, errors are shown with `vim.notify`.
---@param opts lofi.GenerateOpts|string options, or just the prompt
---@param cb? fun(err: lofi.Error?, track: lofi.Track?)
function M.generate(opts, cb)
  if cb ~= nil and type(cb) ~= "function" then
    error("lofi.generate: the callback must be a function, got " .. type(cb), 2)
  end
  ---@type lofi.Waiter
  local waiter = { cb = cb, done = false }
  if type(opts) == "table" then
    waiter.play = opts.play
  end
  local params, err = generate_params(opts)
  if not params then
    vim.schedule(function()
      finish(waiter, err, nil)
    end)
    return
  end
  ---@type lofi.Generation
  local gen = {
    prompt = params.prompt,
    status = "requesting",
    percent = 0,
    waiters = { waiter },
    cancel_requested = false,
  }
  table.insert(state.requesting, gen)
  refresh_progress()
  require("lofi.rpc").request("generate", params, function(req_err, result)
    for i, g in ipairs(state.requesting) do
      if g == gen then
        table.remove(state.requesting, i)
        break
      end
    end
    if req_err or type(result) ~= "table" or type(result.track_id) ~= "string" then
      refresh_progress()
      finish(waiter, req_err or errors.new(errors.daemon.INTERNAL_ERROR, "bad generate reply"))
      return
    end
    local track_id = result.track_id
    local existing = state.by_track[track_id]
    if existing then
      table.insert(existing.waiters, waiter)
      existing.cancel_requested = existing.cancel_requested or gen.cancel_requested
    else
      gen.track_id = track_id
      gen.status = "queued"
      gen.position = result.position
      state.by_track[track_id] = gen
      table.insert(state.order, track_id)
    end
    refresh_progress()
    if gen.cancel_requested then
      M.cancel(track_id)
    end
  end)
end

--- Cancel a generation: `track_id`, or else the running one, else the oldest queued one.
--- The generation's own callback then gets GENERATION_CANCELLED; `cb(err, result)` reports
--- whether the daemon accepted the request.
---@param track_id? string
---@param cb? fun(err: lofi.Error?, result: table?)
function M.cancel(track_id, cb)
  if track_id == nil then
    local gen = current_generation()
    if gen and gen.track_id then
      track_id = gen.track_id
    elseif gen then
      gen.cancel_requested = true
      if cb then
        vim.schedule(function()
          cb(nil, { status = "cancelling" })
        end)
      end
      return
    end
  end
  if track_id == nil then
    local err = errors.new(errors.client.NO_TRACK, "nothing to cancel")
    vim.schedule(function()
      if cb then
        cb(err, nil)
      else
        notify(err.message)
      end
    end)
    return
  end
  require("lofi.rpc").request("cancel", { track_id = track_id }, function(err, result)
    if cb then
      cb(err, result)
    elseif err then
      notify(errors.format(err), vim.log.levels.WARN)
    end
  end)
end

--- List the cached tracks, most recently used first.
---@param cb fun(err: lofi.Error?, tracks: lofi.Track[]?)
function M.tracks(cb)
  require("lofi.rpc").request("tracks.list", nil, function(err, result)
    cb(err, not err and result and result.tracks or nil)
  end)
end

--- Delete a cached track.
---@param track_id string
---@param cb? fun(err: lofi.Error?)
function M.delete_track(track_id, cb)
  require("lofi.rpc").request("tracks.delete", { track_id = track_id }, function(err)
    if cb then
      cb(err)
    elseif err then
      notify(errors.format(err), vim.log.levels.WARN)
    end
  end)
end

--- Install a backend's models through the daemon: download (after asking, unless
--- `opts.yes`), export to ONNX, verify. Progress fires `LofiSetupProgress`; the end fires
--- `LofiSetupComplete` or `LofiSetupError` and calls `cb` once. A declined download calls
--- `cb` with a SETUP_FAILED error and installs nothing.
---@param opts? lofi.SetupOpts
---@param cb? fun(err: lofi.Error?, result: table?) result: `setup_complete`'s params
function M.install(opts, cb)
  opts = opts or {}
  if state.setup then
    local err = errors.new(errors.daemon.SETUP_FAILED, "a setup is already running")
    if cb then
      cb(err, nil)
    else
      notify(errors.format(err), vim.log.levels.WARN)
    end
    return
  end
  ---@type lofi.SetupJob
  local job = { opts = opts, cb = cb, shown_percent = -100, shown_at = 0 }
  state.setup = job
  request_setup(job, opts.yes == true)
end

--- Cancel the setup in progress (its callback then gets GENERATION_CANCELLED).
---@param cb? fun(err: lofi.Error?, cancelled: boolean?)
function M.cancel_install(cb)
  require("lofi.rpc").request("setup.cancel", nil, function(err, result)
    if cb then
      cb(err, type(result) == "table" and result.cancelled == true)
    elseif err then
      notify(errors.format(err), vim.log.levels.WARN)
    end
  end)
end

--- True while a setup started by `install()` has not ended.
---@return boolean
function M.installing()
  return state.setup ~= nil
end

--- The backends the daemon offers, with their status and execution providers.
---@param cb fun(err: lofi.Error?, backends: lofi.Backend[]?)
function M.backends(cb)
  require("lofi.rpc").request("get_backends", nil, cb)
end

---@param track lofi.Track
---@param opts? {loop?: boolean}
local function play_now(track, opts)
  local _, err = require("lofi.player").play(track, opts)
  if err then
    notify(errors.format(err), vim.log.levels.ERROR)
  end
end

--- Play a track: a track table, a file path or a track id; without one, the last track made
--- in this session, or else the most recently used cached track.
---@param track? lofi.Track|string
---@param opts? {loop?: boolean}
function M.play(track, opts)
  local is_path = type(track) == "string" and (track:find("[/\\]") or vim.uv.fs_stat(track))
  if type(track) == "table" or is_path then
    play_now(track --[[@as lofi.Track]], opts)
    return
  end
  if track == nil and state.last_track then
    play_now(state.last_track, opts)
    return
  end
  M.tracks(function(err, tracks)
    if err then
      notify(errors.format(err), vim.log.levels.ERROR)
      return
    end
    for _, item in ipairs(tracks or {}) do
      if track == nil or item.track_id == track then
        play_now(item, opts)
        return
      end
    end
    local missing = track and ("no track " .. track) or "no tracks yet"
    notify(errors.format(errors.new(errors.client.NO_TRACK, missing)), vim.log.levels.WARN)
  end)
end

--- Stop playback.
---@return boolean stopped whether something was playing
function M.stop()
  return require("lofi.player").stop()
end

--- Pause playback (SIGSTOP to the player; not on Windows).
---@return boolean ok
---@return lofi.Error? err
function M.pause()
  return require("lofi.player").pause()
end

--- Resume paused playback.
---@return boolean ok
---@return lofi.Error? err
function M.resume()
  return require("lofi.player").resume()
end

--- Subscribe to an event (see `:help lofi-events`); returns a function that unsubscribes.
---@param event lofi.EventName
---@param fn fun(data: table)
---@return fun() unsubscribe
function M.on(event, fn)
  return events.on(event, fn)
end

--- A short string for statuslines ("" when idle). See `lofi.status`.
---@return string
function M.status()
  return require("lofi.status").get()
end

--- The generations this editor is waiting for, the running one first.
---@return lofi.GenerationInfo[]
function M.active()
  local list = {}
  local function add(gen)
    list[#list + 1] = {
      track_id = gen.track_id,
      prompt = gen.prompt,
      status = gen.status,
      percent = gen.percent,
      phase = gen.phase,
      step = gen.step,
      total_steps = gen.total_steps,
      eta_sec = gen.eta_sec,
    }
  end
  for _, track_id in ipairs(state.order) do
    local gen = state.by_track[track_id]
    if gen and gen.status == "running" then
      add(gen)
    end
  end
  for _, track_id in ipairs(state.order) do
    local gen = state.by_track[track_id]
    if gen and gen.status ~= "running" then
      add(gen)
    end
  end
  for _, gen in ipairs(state.requesting) do
    add(gen)
  end
  return list
end

---@return lofi.Track? track the last track completed in this session
function M.last_track()
  return state.last_track
end

--- Stop the player and the daemon (bounded wait) and close the progress window. Runs on
--- `VimLeavePre`; the daemon starts again on next use.
---@param timeout_ms? integer default `daemon.shutdown_timeout_ms`
---@return boolean exited the daemon is gone
function M.shutdown(timeout_ms)
  require("lofi.player").stop()
  local exited = require("lofi.rpc").shutdown_sync(timeout_ms)
  require("lofi.progress").close()
  return exited
end

-- Loading the API (on first use, never at startup) arms the VimLeavePre cleanup.
create_autocmds()

return M
