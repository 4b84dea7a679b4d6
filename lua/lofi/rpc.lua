--- JSON-RPC 2.0 over the daemon's stdio: requests with callbacks, notification dispatch.
---
--- Every request's callback runs exactly once: with the result, with the daemon's error, with
--- TIMEOUT, or with DAEMON_EXITED when the daemon ends before answering. This module knows
--- nothing of what notifications mean: `lofi.routing` registers the handlers (`set_handlers`)
--- when the API module, `lofi`, loads.
local client = require("lofi.client")
local config = require("lofi.config")
local errors = require("lofi.errors")
local log = require("lofi.log")

local M = {}

---@class lofi.PendingRequest
---@field method string
---@field cb fun(err: lofi.Error?, result: any)
---@field daemon? lofi.Daemon the daemon the request was written to
---@field timer? uv.uv_timer_t

---@class lofi.RpcHandlers
---@field notification? fun(method: string, params: table)
---@field exit? fun(daemon: lofi.Daemon)

local state = {
  next_id = 0,
  ---@type table<integer, lofi.PendingRequest>
  pending = {},
  ---@type lofi.RpcHandlers
  handlers = {},
}

--- Set the notification and daemon-exit handlers (`lofi.routing` does this).
---@param handlers lofi.RpcHandlers
function M.set_handlers(handlers)
  state.handlers = handlers
end

--- Complete a request once: later calls for the same id do nothing.
---@param id integer
---@param err lofi.Error?
---@param result any
local function finish(id, err, result)
  local req = state.pending[id]
  if not req then
    return
  end
  state.pending[id] = nil
  if req.timer and not req.timer:is_closing() then
    req.timer:close()
  end
  local ok, cb_err = pcall(req.cb, err, result)
  if not ok then
    log.error("the callback of %s failed: %s", req.method, cb_err)
    vim.notify(
      string.format("[lofi] a %s callback failed: %s", req.method, cb_err),
      vim.log.levels.ERROR
    )
  end
end

---@param daemon lofi.Daemon
---@param line string
local function on_line(daemon, line)
  if line:match("^%s*$") then
    return
  end
  local ok, msg = pcall(vim.json.decode, line, { luanil = { object = true, array = true } })
  if not ok or type(msg) ~= "table" then
    log.warn("daemon pid %d sent a line that is not JSON: %s", daemon.pid, line:sub(1, 200))
    return
  end
  if type(msg.method) == "string" then
    log.trace("<- %s", line:sub(1, 300))
    if state.handlers.notification then
      state.handlers.notification(msg.method, type(msg.params) == "table" and msg.params or {})
    end
    return
  end
  local id = msg.id
  if type(id) ~= "number" or state.pending[id] == nil then
    if msg.error then
      log.warn("daemon error without a request: %s", vim.inspect(msg.error))
    else
      log.debug("response to an unknown request id %s", tostring(id))
    end
    return
  end
  log.trace("<- %s", line:sub(1, 300))
  if type(msg.error) == "table" then
    finish(id, errors.from_response(msg.error), nil)
  else
    finish(id, nil, msg.result)
  end
end

---@param daemon lofi.Daemon
local function on_exit(daemon)
  local ids = vim.tbl_keys(state.pending)
  table.sort(ids)
  for _, id in ipairs(ids) do
    local req = state.pending[id]
    if req and req.daemon == daemon then
      finish(id, errors.new(errors.client.DAEMON_EXITED, client.exit_reason(daemon)), nil)
    end
  end
  if state.handlers.exit then
    state.handlers.exit(daemon)
  end
end

client.set_listeners({ line = on_line, exit = on_exit })

---@class lofi.RequestOpts
---@field timeout_ms? integer|false no answer in time gives TIMEOUT (default
---   `daemon.request_timeout_ms`; false waits forever)

--- Send a request, starting the daemon if needed. `cb(err, result)` runs exactly once, always
--- from the main loop (never inside this call).
---@param method string
---@param params? table
---@param cb fun(err: lofi.Error?, result: any)
---@param opts? lofi.RequestOpts
---@return integer id
function M.request(method, params, cb, opts)
  opts = opts or {}
  state.next_id = state.next_id + 1
  local id = state.next_id
  local message = { jsonrpc = "2.0", id = id, method = method }
  if params ~= nil then
    message.params = next(params) == nil and vim.empty_dict() or params
  end
  local ok, line = pcall(vim.json.encode, message)
  ---@type lofi.PendingRequest
  local req = { method = method, cb = cb }
  state.pending[id] = req
  if not ok then
    vim.schedule(function()
      finish(id, errors.new(errors.client.INVALID_OPTION, "cannot encode the request: " .. line))
    end)
    return id
  end
  local timeout = opts.timeout_ms
  if timeout == nil then
    timeout = config.get().daemon.request_timeout_ms
  end
  if timeout then
    local timer = assert(vim.uv.new_timer())
    req.timer = timer
    timer:start(
      timeout,
      0,
      vim.schedule_wrap(function()
        finish(
          id,
          errors.new(
            errors.client.TIMEOUT,
            string.format("%s got no answer within %d ms", method, timeout)
          )
        )
      end)
    )
  end
  vim.schedule(function()
    client.ensure(function(err, daemon)
      if state.pending[id] == nil then
        return
      end
      if err or not daemon then
        finish(id, err)
        return
      end
      req.daemon = daemon
      log.trace("-> %s", line:sub(1, 300))
      if not client.write(daemon, line .. "\n") then
        finish(id, errors.new(errors.client.DAEMON_EXITED, "the daemon's stdin is closed"))
      end
    end)
  end)
  return id
end

--- Send a request and wait for its answer (blocking, bounded by `timeout_ms`).
---@param method string
---@param params? table
---@param timeout_ms integer
---@return lofi.Error? err
---@return any result
function M.request_sync(method, params, timeout_ms)
  local done, err, result = false, nil, nil
  M.request(method, params, function(e, r)
    done, err, result = true, e, r
  end, { timeout_ms = timeout_ms })
  vim.wait(timeout_ms + 100, function()
    return done
  end, 10)
  if not done then
    return errors.new(errors.client.TIMEOUT, method .. " got no answer in time"), nil
  end
  return err, result
end

---@return integer count of requests still waiting for an answer
function M.pending_count()
  return vim.tbl_count(state.pending)
end

--- Ask the daemon to stop (cancelling a running generation), then stop it in stages (see
--- `client.stop`). `on_done` runs once it has exited (at once when none runs).
---@param timeout_ms? integer default `daemon.shutdown_timeout_ms`
---@param on_done? fun()
---@return lofi.Daemon? daemon the daemon being stopped
function M.shutdown(timeout_ms, on_done)
  local daemon = client.current()
  if not daemon then
    if on_done then
      on_done()
    end
    return nil
  end
  timeout_ms = timeout_ms or config.get().daemon.shutdown_timeout_ms
  state.next_id = state.next_id + 1
  local line = vim.json.encode({
    jsonrpc = "2.0",
    id = state.next_id,
    method = "shutdown",
    params = { cancel_running = true },
  })
  client.write(daemon, line .. "\n")
  client.stop(daemon, timeout_ms, on_done)
  return daemon
end

--- `shutdown`, then wait for the exit (blocking, bounded). Used on `VimLeavePre`.
---@param timeout_ms? integer
---@return boolean exited
function M.shutdown_sync(timeout_ms)
  timeout_ms = timeout_ms or config.get().daemon.shutdown_timeout_ms
  local daemon = M.shutdown(timeout_ms)
  if not daemon then
    return true
  end
  return client.wait(daemon, timeout_ms + 500)
end

return M
