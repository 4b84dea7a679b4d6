--- Where the daemon's notifications go, and what its exit does. `attach()` registers these
--- handlers with `lofi.rpc` (the API module, `lofi`, calls it when it loads), so the RPC layer
--- never needs to know about the modules below.
---
--- `generation_*` notifications that carry a `track_id` go to `lofi.generations`; `setup_*`
--- notifications that carry a `backend` go to `lofi.install`; `radio_*` notifications that
--- carry a `station_id` go to `lofi.radio` (`radio_saved` and `radio_save_failed` on to
--- `lofi.radio_save`, which matches them to their save by path); anything else is logged and
--- ignored. When the daemon ends, `daemon_exit` fires, unfinished generations, the
--- installation and running radio saves fail with DAEMON_EXITED, a radio station stops, and an
--- unexpected exit nobody else hears of is shown.
local client = require("lofi.client")
local events = require("lofi.events")
local generations = require("lofi.generations")
local install = require("lofi.install")
local log = require("lofi.log")
local radio = require("lofi.radio")
local redraw = require("lofi.redraw")
local rpc = require("lofi.rpc")
local user = require("lofi.user")

local M = {}

--- Hand a notification to the module it is about.
---@param method string
---@param params table
function M.route(method, params)
  local generation_handler = generations.handlers[method]
  local setup_handler = install.handlers[method]
  local radio_handler = radio.handlers[method]
  local handler
  if generation_handler and type(params.track_id) == "string" then
    handler = generation_handler
  elseif setup_handler and type(params.backend) == "string" then
    handler = setup_handler
  elseif radio_handler and type(params.station_id) == "string" then
    handler = radio_handler
  else
    log.debug("ignoring notification %s", method)
    return
  end
  -- A malformed notification must not break the reader of the daemon's output.
  local ok, err = pcall(handler, params)
  if not ok then
    log.error("the %s handler failed: %s", method, err)
  end
  redraw.statusline()
end

---@param daemon lofi.Daemon
local function on_daemon_exit(daemon)
  local reason = client.exit_reason(daemon)
  events.emit("daemon_exit", {
    pid = daemon.pid,
    code = daemon.exit_code,
    signal = daemon.exit_signal,
    expected = daemon.stopping,
    reason = reason,
  })
  local failed = generations.fail_all(reason)
  install.fail(reason)
  if radio.daemon_exited(daemon, reason) then
    failed = failed + 1 -- the radio says so itself
  end
  redraw.statusline()
  if not daemon.stopping and failed == 0 then
    user.notify(reason, vim.log.levels.WARN)
  end
end

--- Register the notification and daemon-exit handlers with `lofi.rpc` (safe to repeat).
function M.attach()
  rpc.set_handlers({ notification = M.route, exit = on_daemon_exit })
end

return M
