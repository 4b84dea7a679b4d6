--- One long-lived mpv driven over its JSON IPC socket (mpv manual, "JSON IPC"): files are
--- appended to its playlist (`loadfile <path> append-play`) and played back to back without a
--- gap (`--gapless-audio=yes`); pause, skip and volume go through the socket, so they act at
--- once.
---
--- The process is started with `lofi.process` and only ever stopped through this handle:
--- `quit` over the socket, then SIGTERM/SIGKILL to its own libuv handle after a grace. The
--- socket lives in a private folder (`vim.fn.tempname()`, mode 0700) that is removed when the
--- process has ended. Every libuv callback runs on the main loop (`vim.schedule_wrap`).
local log = require("lofi.log")
local paths = require("lofi.paths")
local process = require("lofi.process")

local uv = vim.uv

local M = {}

--- mpv's options for a station player: idle with an IPC socket, no video, no terminal input,
--- errors only on stderr, never a window. `--input-ipc-server=<socket>` is added to these.
M.ARGS = {
  "--idle=yes",
  "--gapless-audio=yes",
  "--no-video",
  "--input-terminal=no",
  "--msg-level=all=error",
  "--force-window=no",
}

--- Properties whose changes are reported to `on_property` (mpv manual, "observe_property").
M.OBSERVED = { "playlist-pos", "pause", "idle-active" }

--- How long mpv gets to create its socket.
M.CONNECT_TIMEOUT_MS = 5000
--- How often the socket is tried while mpv starts.
local CONNECT_RETRY_MS = 25
--- How long mpv gets to end after `quit` before SIGTERM, and then before SIGKILL.
M.QUIT_GRACE_MS = 1000
M.KILL_GRACE_MS = 1000
local STDERR_TAIL_CHARS = 2000

---@class lofi.MpvOpts
---@field exe? string the mpv executable (default "mpv")
---@field extra_args? string[] added after `M.ARGS` (e.g. `{"--ao=null"}`)
---@field on_ready? fun(err: string?) the socket is connected, or mpv could not be reached
---@field on_property? fun(name: string, value: any) an observed property changed
---@field on_exit? fun(mpv: lofi.Mpv) mpv ended without being stopped through `stop()`
---@field connect_timeout_ms? integer default `M.CONNECT_TIMEOUT_MS`

---@class lofi.Mpv
---@field pid integer
---@field argv string[]
---@field socket string the IPC socket's path
---@field dir string the private folder that holds it
---@field connected boolean
---@field stopped boolean `stop()` was called
---@field exited boolean the process has ended
---@field props table<string, any> the last value of each observed property
---@field stderr string the end of mpv's stderr
---@field process lofi.Process
---@field package pipe? uv.uv_pipe_t
---@field package queue string[] lines written before the socket was connected
---@field package pending table<integer, fun(err: string?, data: any)>
---@field package next_id integer
---@field package opts lofi.MpvOpts
local Mpv = {}
Mpv.__index = Mpv

---@param handle uv.uv_handle_t?
local function close_handle(handle)
  if handle and not handle:is_closing() then
    handle:close()
  end
end

--- Run every waiting reply callback with `err`.
---@param mpv lofi.Mpv
---@param err string
local function fail_pending(mpv, err)
  local pending = mpv.pending
  mpv.pending = {}
  local ids = vim.tbl_keys(pending)
  table.sort(ids)
  for _, id in ipairs(ids) do
    local ok, cb_err = pcall(pending[id], err, nil)
    if not ok then
      log.error("an mpv reply callback failed: %s", cb_err)
    end
  end
end

--- Remove the socket and its folder (once the process has ended).
---@param mpv lofi.Mpv
local function remove_socket(mpv)
  os.remove(mpv.socket)
  uv.fs_rmdir(mpv.dir)
end

---@param mpv lofi.Mpv
---@param line string
local function on_line(mpv, line)
  if line == "" then
    return
  end
  local ok, msg = pcall(vim.json.decode, line, { luanil = { object = true, array = true } })
  if not ok or type(msg) ~= "table" then
    log.warn("mpv pid %d sent a line that is not JSON: %s", mpv.pid, line:sub(1, 200))
    return
  end
  if msg.request_id ~= nil and msg.event == nil then
    local cb = mpv.pending[msg.request_id]
    mpv.pending[msg.request_id] = nil
    if cb then
      local err = msg.error ~= "success" and tostring(msg.error) or nil
      local cb_ok, cb_err = pcall(cb, err, msg.data)
      if not cb_ok then
        log.error("an mpv reply callback failed: %s", cb_err)
      end
    end
    return
  end
  if msg.event == "property-change" and type(msg.name) == "string" then
    mpv.props[msg.name] = msg.data
    if mpv.opts.on_property and not mpv.stopped then
      mpv.opts.on_property(msg.name, msg.data)
    end
  elseif msg.event == "end-file" and msg.reason == "error" then
    log.warn("mpv could not play a file: %s", tostring(msg.file_error))
  end
end

---@param mpv lofi.Mpv
---@param data string
local function send(mpv, data)
  if mpv.connected and mpv.pipe and not mpv.pipe:is_closing() then
    local ok, err = pcall(mpv.pipe.write, mpv.pipe, data)
    if not ok then
      log.warn("writing to mpv's socket failed: %s", tostring(err))
    end
  else
    table.insert(mpv.queue, data)
  end
end

--- Send a command (a list: name and arguments). `cb(err, data)` gets mpv's reply (err is nil
--- for "success"), or an error when mpv ends first. Commands sent before the socket is
--- connected wait and go out in order once it is.
---@param args any[]
---@param cb? fun(err: string?, data: any)
function Mpv:command(args, cb)
  if self.stopped or self.exited then
    if cb then
      vim.schedule(function()
        cb("mpv is not running", nil)
      end)
    end
    return
  end
  self.next_id = self.next_id + 1
  local id = self.next_id
  if cb then
    self.pending[id] = cb
  end
  send(self, vim.json.encode({ command = args, request_id = id }) .. "\n")
end

--- Append a file to the playlist; playback starts with it when nothing plays.
---@param path string made absolute
---@param cb? fun(err: string?)
function Mpv:append(path, cb)
  self:command({ "loadfile", paths.absolute(path), "append-play" }, cb)
end

--- Go to the next playlist entry (an error when there is none).
---@param cb? fun(err: string?)
function Mpv:next(cb)
  self:command({ "playlist-next" }, cb)
end

---@param paused boolean
---@param cb? fun(err: string?)
function Mpv:set_pause(paused, cb)
  self:command({ "set_property", "pause", paused }, cb)
end

---@param volume number 0-100
---@param cb? fun(err: string?)
function Mpv:set_volume(volume, cb)
  self:command({ "set_property", "volume", volume }, cb)
end

---@param name string
---@param cb fun(err: string?, value: any)
function Mpv:get(name, cb)
  self:command({ "get_property", name }, cb)
end

---@return boolean
function Mpv:is_alive()
  return not self.exited and not self.stopped
end

--- Stop mpv: `quit` over the socket, SIGTERM after `M.QUIT_GRACE_MS`, SIGKILL after
--- `M.KILL_GRACE_MS` more. With `sync` (Neovim is exiting, no timer would fire) it blocks at
--- most that long. The socket folder goes once the process has ended. Safe to repeat.
---@param opts? {sync?: boolean}
function Mpv:stop(opts)
  if self.stopped then
    return
  end
  local was_connected = self.connected
  if was_connected then
    send(self, vim.json.encode({ command = { "quit" } }) .. "\n")
  end
  self.stopped = true
  self.connected = false
  fail_pending(self, "mpv was stopped")
  local pipe = self.pipe
  self.pipe = nil
  if pipe and not pipe:is_closing() then
    -- shutdown() sends what was written (the quit) before the pipe closes.
    local ok = pcall(pipe.shutdown, pipe, function()
      close_handle(pipe)
    end)
    if not ok then
      close_handle(pipe)
    end
  end
  local proc = self.process
  if opts and opts.sync then
    if was_connected then
      vim.wait(M.QUIT_GRACE_MS, function()
        return proc.exited
      end, 10)
    end
    proc:terminate_sync(M.KILL_GRACE_MS)
    remove_socket(self)
    return
  end
  if not was_connected then
    proc:terminate(M.KILL_GRACE_MS)
    return
  end
  vim.defer_fn(function()
    proc:terminate(M.KILL_GRACE_MS)
  end, M.QUIT_GRACE_MS)
end

--- Try the socket until it accepts, mpv ends, or the timeout passes.
---@param mpv lofi.Mpv
---@param deadline integer `uv.now()` value
---@param ready fun(err: string?)
local function connect(mpv, deadline, ready)
  if mpv.stopped or mpv.exited then
    return
  end
  local pipe = assert(uv.new_pipe(false))
  local function retry(why)
    close_handle(pipe)
    if mpv.stopped or mpv.exited then
      return
    end
    if uv.now() >= deadline then
      ready(string.format("mpv did not open its IPC socket %s (%s)", mpv.socket, tostring(why)))
      return
    end
    vim.defer_fn(function()
      connect(mpv, deadline, ready)
    end, CONNECT_RETRY_MS)
  end
  local ok, err = pcall(
    pipe.connect,
    pipe,
    mpv.socket,
    vim.schedule_wrap(function(connect_err)
      if connect_err then
        retry(connect_err)
        return
      end
      if mpv.stopped or mpv.exited then
        close_handle(pipe)
        return
      end
      mpv.pipe = pipe
      mpv.connected = true
      local feed = process.line_reader(function(line)
        on_line(mpv, line)
      end)
      pipe:read_start(vim.schedule_wrap(function(read_err, chunk)
        if read_err then
          log.warn("reading mpv's socket: %s", read_err)
        end
        if chunk then
          feed(chunk)
        end
      end))
      for i, name in ipairs(M.OBSERVED) do
        send(mpv, vim.json.encode({ command = { "observe_property", i, name } }) .. "\n")
      end
      local queued = mpv.queue
      mpv.queue = {}
      for _, data in ipairs(queued) do
        send(mpv, data)
      end
      ready(nil)
    end)
  )
  if not ok then
    retry(err)
  end
end

--- Start mpv and connect to its socket. Returns the handle at once (commands wait for the
--- connection); `opts.on_ready` says when it is connected or why it cannot be. Never raises.
---@param opts? lofi.MpvOpts
---@return lofi.Mpv? mpv
---@return string? err why it could not start
function M.start(opts)
  opts = opts or {}
  local dir = vim.fn.tempname()
  local made, mkdir_err = uv.fs_mkdir(dir, tonumber("700", 8))
  if not made then
    return nil, string.format("cannot create the mpv socket folder %s: %s", dir, mkdir_err)
  end
  local socket = vim.fs.joinpath(dir, "mpv.sock")
  local argv = { opts.exe or "mpv", "--input-ipc-server=" .. socket }
  vim.list_extend(argv, M.ARGS)
  vim.list_extend(argv, opts.extra_args or {})
  local mpv = setmetatable({
    pid = -1,
    argv = argv,
    socket = socket,
    dir = dir,
    connected = false,
    stopped = false,
    exited = false,
    props = {},
    stderr = "",
    queue = {},
    pending = {},
    next_id = 0,
    opts = opts,
  }, Mpv) --[[@as lofi.Mpv]]
  local ready_called = false
  local function ready(err)
    if ready_called then
      return
    end
    ready_called = true
    if err then
      log.warn("%s", err)
      mpv:stop()
    end
    if opts.on_ready then
      opts.on_ready(err)
    end
  end
  local proc, spawn_err = process.spawn(argv, {
    on_stderr = function(chunk)
      log.debug("mpv: %s", vim.trim(chunk))
      mpv.stderr = (mpv.stderr .. chunk):sub(-STDERR_TAIL_CHARS)
    end,
    on_exit = function(p)
      mpv.exited = true
      mpv.connected = false
      close_handle(mpv.pipe)
      remove_socket(mpv)
      log.debug("mpv pid %d exited (code %s)", p.pid, tostring(p.exit_code))
      fail_pending(mpv, "mpv exited")
      if mpv.stopped then
        ready_called = true -- stopped on purpose before it was ready: nothing to report
      elseif not ready_called then
        local said = require("lofi.player").last_line(mpv.stderr)
        ready(
          string.format(
            "mpv exited at start (code %s)%s",
            tostring(p.exit_code),
            said and (": " .. said) or ""
          )
        )
      elseif opts.on_exit then
        opts.on_exit(mpv)
      end
    end,
    drain_ms = 200,
  })
  if not proc then
    uv.fs_rmdir(dir)
    return nil, string.format("cannot start %s: %s", argv[1], tostring(spawn_err))
  end
  mpv.process = proc
  mpv.pid = proc.pid
  log.info("mpv pid %d: %s", mpv.pid, table.concat(argv, " "))
  connect(mpv, uv.now() + (opts.connect_timeout_ms or M.CONNECT_TIMEOUT_MS), ready)
  return mpv, nil
end

return M
