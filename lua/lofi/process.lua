--- Child processes (the daemon, the player): spawn with pipes, stdout as lines, stdin writes,
--- exit with the output drained, and stopping with SIGTERM then SIGKILL.
---
--- Built on `vim.uv.spawn` rather than `vim.system`: `vim.system` reports the exit only once
--- stdout and stderr are closed, which a grandchild that inherited them can delay for ever;
--- here the exit is reported at most `drain_ms` after the process ended. Only the process
--- spawned here is ever signalled, through its own libuv handle. Every callback runs on the
--- main loop (`vim.schedule_wrap`), so it may use any Neovim API.
local log = require("lofi.log")

local uv = vim.uv

local M = {}

--- How long to wait, after the process ended, for the rest of its output.
M.DRAIN_MS = 1000

---@class lofi.ProcessOpts
---@field env? table<string, string> variables added to the editor's environment
---@field stdin? boolean open a pipe to the process's stdin (default: no stdin)
---@field on_stdout? fun(line: string) each stdout line, without its "\n" (or "\r\n"); a last
---   unterminated line comes at the end of the output. Without it, stdout is discarded.
---@field on_stderr? fun(chunk: string) stderr as it arrives; without it, stderr is discarded
---@field on_exit? fun(proc: lofi.Process) runs once, when the process has ended and its output
---   is drained (or `drain_ms` later); no callback runs after it
---@field drain_ms? integer default `M.DRAIN_MS`

---@class lofi.Process
---@field pid integer
---@field argv string[]
---@field exited boolean the process has ended (`exit_code` and `exit_signal` are set)
---@field closed boolean every handle is closed and `on_exit` has run
---@field exit_code? integer
---@field exit_signal? integer
---@field package handle uv.uv_process_t
---@field package stdin? uv.uv_pipe_t
---@field package outputs uv.uv_pipe_t[] stdout and stderr pipes still open
---@field package opts lofi.ProcessOpts
local Process = {}
Process.__index = Process

--- Split a byte stream into lines. Returns a function to feed chunks to; a line is delivered
--- (without its "\n" or a trailing "\r") once its newline has arrived, so a line split across
--- chunks is joined and a partial line waits for the rest. Linear in the input size.
---@param on_line fun(line: string)
---@return fun(chunk: string?) feed; nil means end of stream (a last unterminated line is
---   delivered then)
function M.line_reader(on_line)
  local parts = {}
  return function(chunk)
    if chunk == nil then
      if #parts > 0 then
        local rest = table.concat(parts)
        parts = {}
        on_line((rest:gsub("\r$", "")))
      end
      return
    end
    local start = 1
    while true do
      local nl = chunk:find("\n", start, true)
      if not nl then
        break
      end
      parts[#parts + 1] = chunk:sub(start, nl - 1)
      local line = table.concat(parts)
      parts = {}
      on_line((line:gsub("\r$", "")))
      start = nl + 1
    end
    if start <= #chunk then
      parts[#parts + 1] = chunk:sub(start)
    end
  end
end

---@param handle uv.uv_handle_t?
local function close_handle(handle)
  if handle and not handle:is_closing() then
    handle:close()
  end
end

---@param overrides? table<string, string>
---@return string[]? env in "NAME=value" form, nil to inherit the editor's
local function build_env(overrides)
  if not overrides then
    return nil
  end
  local env = vim.tbl_extend("force", vim.fn.environ(), overrides)
  local list = {}
  for name, value in pairs(env) do
    list[#list + 1] = name .. "=" .. value
  end
  return list
end

--- Close every handle and run `on_exit`, once.
---@param proc lofi.Process
local function finish(proc)
  if proc.closed then
    return
  end
  proc.closed = true
  close_handle(proc.stdin)
  for _, pipe in ipairs(proc.outputs) do
    close_handle(pipe)
  end
  proc.outputs = {}
  close_handle(proc.handle)
  if proc.opts.on_exit then
    proc.opts.on_exit(proc)
  end
end

---@param proc lofi.Process
---@param pipe uv.uv_pipe_t
local function output_done(proc, pipe)
  close_handle(pipe)
  for i, open in ipairs(proc.outputs) do
    if open == pipe then
      table.remove(proc.outputs, i)
      break
    end
  end
  if proc.exited and #proc.outputs == 0 then
    finish(proc)
  end
end

---@param proc lofi.Process
---@param pipe uv.uv_pipe_t
---@param name string "stdout" or "stderr", for the log
---@param on_chunk fun(chunk: string?) nil at the end of the output
local function read(proc, pipe, name, on_chunk)
  pipe:read_start(vim.schedule_wrap(function(err, chunk)
    if proc.closed then
      return
    end
    if err then
      log.warn("%s of pid %d: %s", name, proc.pid, err)
    end
    on_chunk(chunk)
    if not chunk then
      output_done(proc, pipe)
    end
  end))
end

--- Start a process. Never raises: a process that cannot start gives an error message.
---@param argv string[] the executable and its arguments
---@param opts? lofi.ProcessOpts
---@return lofi.Process? proc
---@return string? err why it could not start
function M.spawn(argv, opts)
  opts = opts or {}
  local stdin = opts.stdin and uv.new_pipe(false) or nil
  local stdout = opts.on_stdout and uv.new_pipe(false) or nil
  local stderr = opts.on_stderr and uv.new_pipe(false) or nil
  local proc = setmetatable({
    pid = -1,
    argv = argv,
    exited = false,
    closed = false,
    stdin = stdin,
    outputs = vim.tbl_filter(function(pipe)
      return pipe ~= nil
    end, { stdout, stderr }),
    opts = opts,
  }, Process) --[[@as lofi.Process]]
  local drain_ms = opts.drain_ms or M.DRAIN_MS
  local handle, pid_or_err = uv.spawn(
    argv[1],
    {
      args = vim.list_slice(argv, 2),
      stdio = { stdin, stdout, stderr },
      env = build_env(opts.env),
      hide = true,
    },
    vim.schedule_wrap(function(code, signal)
      proc.exit_code, proc.exit_signal = code, signal
      proc.exited = true
      if #proc.outputs == 0 then
        finish(proc)
      else
        vim.defer_fn(function()
          finish(proc)
        end, drain_ms)
      end
    end)
  )
  if not handle then
    close_handle(stdin)
    close_handle(stdout)
    close_handle(stderr)
    return nil, tostring(pid_or_err)
  end
  proc.handle = handle
  proc.pid = pid_or_err --[[@as integer]]
  if stdout then
    local feed = M.line_reader(function(line)
      opts.on_stdout(line)
    end)
    read(proc, stdout, "stdout", feed)
  end
  if stderr then
    read(proc, stderr, "stderr", function(chunk)
      if chunk then
        opts.on_stderr(chunk)
      end
    end)
  end
  return proc, nil
end

--- True until the process has ended.
---@return boolean
function Process:is_alive()
  return not self.exited and not self.handle:is_closing()
end

--- Write to the process's stdin.
---@param data string
---@return boolean ok false when there is no stdin, it is closed, or the process has ended
function Process:write(data)
  local stdin = self.stdin
  if self.exited or not stdin or stdin:is_closing() then
    return false
  end
  return (pcall(stdin.write, stdin, data))
end

--- Close stdin once what was written has been sent (the process sees the end of its input).
function Process:close_stdin()
  local stdin = self.stdin
  if not stdin or stdin:is_closing() then
    return
  end
  local ok = pcall(
    stdin.shutdown,
    stdin,
    vim.schedule_wrap(function()
      close_handle(stdin)
    end)
  )
  if not ok then
    close_handle(stdin)
  end
end

--- Send a signal to the process, if it is still running.
---@param signal string|integer "sigterm", "sigstop", ...
---@return boolean sent
function Process:kill(signal)
  if not self:is_alive() then
    return false
  end
  log.debug("sending %s to pid %d (%s)", tostring(signal), self.pid, self.argv[1])
  return (pcall(self.handle.kill, self.handle, signal))
end

--- Stop the process: SIGTERM now, SIGKILL after `grace_ms` if it is still running.
---@param grace_ms integer
---@return boolean sent SIGTERM was sent (false: it had already ended)
function Process:terminate(grace_ms)
  if not self:kill("sigterm") then
    return false
  end
  vim.defer_fn(function()
    self:kill("sigkill")
  end, grace_ms)
  return true
end

--- Stop the process now, blocking: SIGTERM, wait at most `grace_ms` for it to end, then
--- SIGKILL. For `VimLeavePre`, when a timer armed by `terminate` would never fire. Returns
--- whether the process ended within `grace_ms` (false: it got SIGKILL, or it had already
--- ended and nothing was sent).
---@param grace_ms integer
---@return boolean ended_by_sigterm
function Process:terminate_sync(grace_ms)
  if not self:kill("sigterm") then
    return false
  end
  -- The exit callback runs on the main loop, which vim.wait keeps running.
  local ended = vim.wait(grace_ms, function()
    return self.exited
  end, 10)
  if not ended then
    log.warn("pid %d (%s) ignored SIGTERM for %d ms: SIGKILL", self.pid, self.argv[1], grace_ms)
    self:kill("sigkill")
  end
  return ended
end

return M
