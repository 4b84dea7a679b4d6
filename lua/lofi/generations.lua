--- The generations this editor waits for: requests not answered yet, then accepted ones by
--- track id. Each `generate()` callback (a waiter) runs exactly once: with the track, the
--- daemon's error, GENERATION_CANCELLED, or DAEMON_EXITED (`fail_all`). Also keeps the
--- progress window current and plays finished tracks (`player.autoplay`, `play = ...`).
local config = require("lofi.config")
local errors = require("lofi.errors")
local events = require("lofi.events")
local generate_params = require("lofi.generate_params")
local log = require("lofi.log")
local player = require("lofi.player")
local progress = require("lofi.progress")
local redraw = require("lofi.redraw")
local rpc = require("lofi.rpc")
local text = require("lofi.text")
local user = require("lofi.user")

local M = {}

---@class lofi.Waiter
---@field cb? fun(err: lofi.Error?, track: lofi.Track?)
---@field play? boolean
---@field done boolean

---@class lofi.Generation
---@field track_id? string
---@field prompt string
---@field backend? string sent as `backend`, else the daemon's default when known
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
}

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
    user.callback("generate()", waiter.cb, err, track)
  elseif err and err.code ~= errors.daemon.GENERATION_CANCELLED then
    user.notify_error(err)
  end
end

--- The generation to show: the running one, else the oldest queued one, else the oldest
--- request not answered yet.
---@return lofi.Generation? shown
---@return integer others how many others wait
function M.current()
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

--- Show the current generation in the progress window, or close it when there is none.
function M.refresh_progress()
  redraw.statusline()
  local gen, queued = M.current()
  if not gen then
    progress.close()
    return
  end
  -- The window is a view: a failure to draw it is logged, never lets the state go stale.
  local ok, err = pcall(progress.update, {
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
  if not ok then
    log.error("the progress window failed: %s", err)
    pcall(progress.close)
  end
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
---@return string? not_played why a wanted track was not played (for the "ready" message)
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
    return nil
  end
  return player.autoplay(track)
end

--- A finished track (its path readable here): events, progress, autoplay, the waiters.
---@param track lofi.Track
local function complete(track)
  local gen = remove(track.track_id)
  state.last_track = track
  user.protect("generation_complete", function()
    events.emit("generation_complete", track)
    M.refresh_progress()
    local not_played = maybe_autoplay(gen, track)
    if config.get().notify then
      local level = not_played and vim.log.levels.WARN or nil
      user.notify(text.ready_message(track) .. player.ready_suffix(track, not_played), level)
    elseif not_played then
      user.notify(not_played, vim.log.levels.WARN)
    end
  end)
  for _, waiter in ipairs(gen and gen.waiters or {}) do
    finish(waiter, nil, track)
  end
end

--- Handlers of the daemon's `generation_*` notifications, by method (`lofi.routing` calls
--- them for notifications that carry a `track_id`).
---@type table<string, fun(params: table)>
M.handlers = {
  generation_start = function(params)
    local gen = state.by_track[params.track_id]
    if gen then
      gen.status = "running"
      gen.percent = 0
    end
    events.emit("generation_start", params)
    M.refresh_progress()
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
    M.refresh_progress()
  end,
  generation_complete = function(params)
    -- from the daemon's machine first, when its path is not readable here (`lofi.remote`)
    require("lofi.remote").localize(params, complete)
  end,
  generation_error = function(params)
    local gen = remove(params.track_id)
    local err = errors.from_notification(params)
    user.protect("generation_error", function()
      events.emit("generation_error", params)
      M.refresh_progress()
    end)
    for _, waiter in ipairs(gen and gen.waiters or {}) do
      finish(waiter, err, nil)
    end
  end,
  generation_cancelled = function(params)
    local gen = remove(params.track_id)
    user.protect("generation_cancelled", function()
      events.emit("generation_cancelled", params)
      M.refresh_progress()
      if config.get().notify then
        user.notify("cancelled: " .. (gen and gen.prompt or params.track_id))
      end
    end)
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

--- The daemon died: every accepted generation fails with DAEMON_EXITED (a `generation_error`
--- event each, then its callbacks). Requests not answered yet fail through `lofi.rpc`.
---@param reason string how the daemon ended
---@return integer count how many generations failed
function M.fail_all(reason)
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
  M.refresh_progress()
  return #ids
end

--- Check generate() options and turn them into daemon parameters (`lofi.generate_params`).
M.params = generate_params.build

--- Start a generation (see `lofi.generate()`); `cb` runs exactly once.
---@param opts lofi.GenerateOpts|string
---@param cb? fun(err: lofi.Error?, track: lofi.Track?)
---@param source? lofi.Track the cached track `opts.src` names
function M.generate(opts, cb, source)
  ---@type lofi.Waiter
  local waiter = { cb = cb, done = false }
  if type(opts) == "table" then
    waiter.play = opts.play
  end
  local params, err = M.params(opts, source)
  if not params then
    vim.schedule(function()
      finish(waiter, err, nil)
    end)
    return
  end
  ---@type lofi.Generation
  local gen = {
    prompt = params.prompt,
    backend = params.backend or require("lofi.backend").daemon_default(),
    status = "requesting",
    percent = 0,
    waiters = { waiter },
    cancel_requested = false,
  }
  local function unlist()
    for i, g in ipairs(state.requesting) do
      if g == gen then
        table.remove(state.requesting, i)
        break
      end
    end
  end
  table.insert(state.requesting, gen)
  M.refresh_progress()
  local sent, send_err = pcall(rpc.request, "generate", params, function(req_err, result)
    unlist()
    if req_err or type(result) ~= "table" or type(result.track_id) ~= "string" then
      M.refresh_progress()
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
    M.refresh_progress()
    if gen.cancel_requested then
      M.cancel(track_id)
    end
  end)
  if not sent then
    -- Nothing may stay "requesting" for a request that never left: fail it, recover.
    log.error("generate request failed: %s", send_err)
    unlist()
    M.refresh_progress()
    local failure = "the generate request could not be sent: " .. tostring(send_err)
    vim.schedule(function()
      finish(waiter, errors.new(errors.daemon.INTERNAL_ERROR, failure), nil)
    end)
  end
end

--- Cancel a generation (see `lofi.cancel()`).
---@param track_id? string
---@param cb? fun(err: lofi.Error?, result: table?)
function M.cancel(track_id, cb)
  if track_id == nil then
    local gen = M.current()
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
        user.notify(err.message)
      end
    end)
    return
  end
  rpc.request("cancel", { track_id = track_id }, function(err, result)
    if cb then
      cb(err, result)
    elseif err then
      user.notify_error(err, vim.log.levels.WARN)
    end
  end)
end

--- The generations this editor is waiting for, the running one first.
---@return lofi.GenerationInfo[]
function M.active()
  local list = {}
  local function add(gen)
    list[#list + 1] = {
      track_id = gen.track_id,
      prompt = gen.prompt,
      backend = gen.backend,
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

return M
