--- `:checkhealth lofi`: Neovim, the daemon (a live ping), ONNX Runtime, models, player, radio
--- (mpv), logs.
local M = {}

local health = vim.health

--- The install command run in the plugin folder (the lazy.nvim `build` step of the README and
--- `:help lofi-install`; tests/test_docs.py checks that the three agree).
M.BUILD = "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 "
  .. "&& .venv/bin/pip install -e '.[export]'"

--- What to do when no audio player is installed: the install commands, by system.
---@return string[]
function M.player_advice()
  local advice = {}
  if vim.fn.has("mac") == 1 then
    advice[#advice + 1] = "Install mpv: brew install mpv (or use afplay, which macOS includes)."
  else
    advice[#advice + 1] = "Install mpv: sudo apt install mpv (Debian, Ubuntu), sudo dnf install "
      .. "mpv (Fedora), sudo pacman -S mpv (Arch), brew install mpv (macOS)."
    advice[#advice + 1] = "Or ffmpeg's ffplay (sudo apt install ffmpeg), PipeWire's pw-play, "
      .. "PulseAudio's paplay or ALSA's aplay (sudo apt install alsa-utils)."
  end
  advice[#advice + 1] = "Or set player.cmd in setup() (see :help lofi-config-player.cmd)."
  return advice
end

local function check_neovim()
  health.start("lofi.nvim: Neovim")
  local version = tostring(vim.version())
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. version)
  else
    health.error("Neovim " .. version .. " is too old", { "Install Neovim 0.10 or newer." })
  end
end

---@param cfg lofi.Config
---@return boolean daemon_ok
local function check_daemon(cfg)
  local client = require("lofi.client")
  local rpc = require("lofi.rpc")
  health.start("lofi.nvim: daemon")
  local argv, err = client.command(cfg)
  if not argv then
    health.error(err and err.message or "no daemon command", {
      "Install the daemon in the plugin folder (the build step of :help lofi-install): " .. M.BUILD,
      "or put `lofi-daemon` on PATH, or set daemon.cmd in setup() (see :help lofi-config).",
    })
    return false
  end
  health.ok("daemon command: " .. table.concat(argv, " "))
  local timeout = cfg.daemon.request_timeout_ms
  local ping_err, pong = rpc.request_sync("ping", nil, timeout)
  if ping_err or type(pong) ~= "table" then
    health.error("the daemon did not answer ping: " .. (ping_err and ping_err.message or "?"), {
      "Run the daemon command above in a terminal to see why it fails.",
      "Read the daemon log: :Lofi log",
    })
    return false
  end
  health.ok(
    string.format("daemon %s answered ping (pid %s)", tostring(pong.version), tostring(pong.pid))
  )
  if cfg.daemon.remote then
    health.info("remote daemon: tracks are fetched into " .. require("lofi.remote").dir())
  end
  return true
end

---@param cfg lofi.Config
local function check_models(cfg)
  health.start("lofi.nvim: ONNX Runtime and models")
  local err, backends =
    require("lofi.rpc").request_sync("backends.list", nil, cfg.daemon.request_timeout_ms)
  if err or type(backends) ~= "table" then
    health.error("backends.list failed: " .. (err and err.message or "no answer"), {
      "Read the daemon log: :Lofi log",
    })
    return
  end
  local choice = require("lofi.backend")
  choice.remember(backends)
  local in_use = choice.in_use(backends)
  health.info("backend in use: " .. choice.describe(backends))
  local providers = {}
  for _, backend in ipairs(backends) do
    if #providers == 0 and type(backend.providers) == "table" then
      providers = backend.providers
    end
  end
  if #providers > 0 then
    health.ok("ONNX Runtime providers: " .. table.concat(providers, ", "))
  else
    health.warn("ONNX Runtime reported no execution providers", {
      "Reinstall onnxruntime in the daemon's environment.",
    })
  end
  for _, backend in ipairs(backends) do
    local name = tostring(backend.name)
    local used = backend.name == in_use
    local mark = used and " (in use)" or ""
    local folder = type(backend.models_dir) == "string" and backend.models_dir
      or "the folder of daemon.models_dir"
    local setup_hint = string.format(
      "Install the models: :Lofi setup %s (or `lofi-daemon setup %s` in a terminal), or put "
        .. "models exported with `lofi-export onnx` in %s.",
      name,
      name,
      folder
    )
    if backend.status == "ready" then
      health.ok(
        string.format("%s models installed%s: %s", name, mark, tostring(backend.model_version))
      )
    elseif backend.status == "not_installed" and not used then
      health.info(
        string.format("%s models are not installed (not in use): :Lofi setup %s", name, name)
      )
    elseif backend.status == "not_installed" then
      health.error(
        string.format("%s models are not installed%s: %s", name, mark, tostring(backend.message)),
        { setup_hint }
      )
    else
      local report = used and health.error or health.warn
      report(
        string.format("%s models cannot be used%s: %s", name, mark, tostring(backend.message)),
        {
          "Repair the installation: :Lofi setup " .. name .. " force",
          "Read the daemon log: :Lofi log",
        }
      )
    end
  end
end

---@param cfg lofi.Config
local function check_player(cfg)
  local player = require("lofi.player")
  health.start("lofi.nvim: playback")
  if cfg.player.cmd then
    local exe = cfg.player.cmd[1]
    if vim.fn.executable(exe) == 1 then
      health.ok("player.cmd: " .. table.concat(cfg.player.cmd, " "))
    else
      health.error(string.format("player.cmd[1] %q is not an executable", exe), {
        "Fix player.cmd in setup(), or remove it to use a detected player.",
      })
    end
    return
  end
  local spec = player.detect()
  if spec then
    health.ok("player: " .. vim.fn.exepath(spec.name))
  else
    local names = vim.tbl_map(function(s)
      return s.name
    end, player.known)
    health.warn(
      "no audio player found (tried "
        .. table.concat(names, ", ")
        .. "): finished tracks are kept but not played",
      M.player_advice()
    )
  end
end

--- The radio plays gaplessly with mpv (its IPC socket); other players fall back to one file
--- after another.
---@param cfg lofi.Config
local function check_radio(cfg)
  health.start("lofi.nvim: radio")
  if cfg.player.cmd then
    health.info(
      "player.cmd is set: the radio plays its segments one after another through it (a short "
        .. "gap at each join); without player.cmd it uses mpv, which plays them gaplessly"
    )
    return
  end
  if vim.fn.executable("mpv") == 1 then
    health.ok("mpv: " .. vim.fn.exepath("mpv") .. " (gapless radio playback)")
  else
    health.warn(
      "mpv not found: the radio plays its segments one after another (a short gap at each join)",
      { M.player_advice()[1] }
    )
  end
end

local function check_logs()
  local log = require("lofi.log")
  health.start("lofi.nvim: logs")
  health.info("plugin log: " .. log.path() .. " (:Lofi log plugin)")
  local file = require("lofi.config").get().daemon.log_file
  local daemon_log = type(file) == "string" and require("lofi.paths").expand(file)
    or log.daemon_path()
  health.info("daemon log: " .. daemon_log .. " (:Lofi log)")
end

--- Run the checks (`:checkhealth lofi`).
function M.check()
  -- The API module routes the daemon's notifications and stops the daemon on VimLeavePre;
  -- load it before the ping starts a daemon.
  require("lofi")
  local cfg = require("lofi.config").get()
  check_neovim()
  if check_daemon(cfg) then
    check_models(cfg)
  end
  check_player(cfg)
  check_radio(cfg)
  check_logs()
end

return M
