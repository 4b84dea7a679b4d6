--- Error codes shared with the daemon, plus the plugin's own codes.
---
--- Daemon codes mirror `lofi_daemon/errors.py` (`ERROR_TABLE`) number for number;
--- `tests/test_lua_errors.py` parses the `M.daemon` table below and compares it. Client codes
--- live in -32100..-32199, a range the daemon never uses.
local M = {}

-- Daemon codes (keep equal to lofi_daemon/errors.py ERROR_TABLE).
M.daemon = {
  PARSE_ERROR = -32700,
  INVALID_REQUEST = -32600,
  METHOD_NOT_FOUND = -32601,
  INVALID_PARAMS = -32602,
  INTERNAL_ERROR = -32603,
  MODEL_NOT_FOUND = -32000,
  MODEL_LOAD_FAILED = -32001,
  MODEL_DOWNLOAD_FAILED = -32002,
  MODEL_INFERENCE_FAILED = -32003,
  QUEUE_FULL = -32004,
  INVALID_DURATION = -32005,
  INVALID_PROMPT = -32006,
  INVALID_BACKEND = -32007,
  BACKEND_NOT_INSTALLED = -32008,
  INVALID_INFERENCE_STEPS = -32009,
  INVALID_GUIDANCE_SCALE = -32010,
  INVALID_SCHEDULER = -32011,
  INVALID_CFG_TYPE = -32012,
  INVALID_PARAMETER = -32013,
  TRACK_NOT_FOUND = -32014,
  GENERATION_CANCELLED = -32015,
  SETUP_FAILED = -32016,
  INVALID_FORMAT = -32017,
  OUTPUT_WRITE_FAILED = -32018,
  INVALID_SOURCE = -32019,
  RADIO_NOT_ACTIVE = -32020,
}

-- Client codes (raised by the plugin itself; range -32100..-32199).
M.client = {
  DAEMON_SPAWN_FAILED = -32100,
  DAEMON_EXITED = -32101,
  TIMEOUT = -32102,
  INVALID_OPTION = -32103,
  PLAYER_NOT_FOUND = -32104,
  NO_TRACK = -32105,
  NOT_SUPPORTED = -32106,
}

M.CLIENT_MIN = -32199
M.CLIENT_MAX = -32100

---@type table<string, string>
local client_remedies = {
  DAEMON_SPAWN_FAILED = "Install the daemon (see :help lofi-install) or set daemon.cmd in "
    .. "setup(); :checkhealth lofi shows what was tried.",
  DAEMON_EXITED = "See the daemon log (:Lofi log). The next request starts a new daemon.",
  TIMEOUT = "The daemon did not answer in time; see :Lofi log, or raise "
    .. "daemon.request_timeout_ms.",
  INVALID_OPTION = "Fix the option named in the message (see :help lofi-config and "
    .. ":help lofi.generate()).",
  PLAYER_NOT_FOUND = "Install mpv, ffplay, pw-play, paplay, afplay or aplay, or set player.cmd.",
  NO_TRACK = "Generate a track first (:Lofi generate) or pick one with :Lofi tracks.",
  NOT_SUPPORTED = "See :help lofi for what this version supports.",
}

--- Remedies, as they apply in the editor, of daemon codes the plugin also raises itself.
---@type table<string, string>
local editor_remedies = {
  RADIO_NOT_ACTIVE = "Start a station with :Lofi radio (or require('lofi').radio.start()).",
}

---@type table<integer, string>
local names = {}
for name, code in pairs(M.daemon) do
  names[code] = name
end
for name, code in pairs(M.client) do
  names[code] = name
end

--- All codes by name, daemon and client together.
---@type table<string, integer>
M.codes = vim.tbl_extend("error", M.daemon, M.client)

---@param code integer
---@return string name the code's name, or "UNKNOWN_ERROR"
function M.name(code)
  return names[code] or "UNKNOWN_ERROR"
end

---@param code integer
---@return boolean
function M.is_client_code(code)
  return code >= M.CLIENT_MIN and code <= M.CLIENT_MAX
end

local error_mt = {
  __tostring = function(err)
    return string.format("%s: %s", err.name, err.message)
  end,
}

--- Build an error table.
---@param code integer
---@param message string
---@param extra? {remedy?: string, data?: table, track_id?: string}
---@return lofi.Error
function M.new(code, message, extra)
  extra = extra or {}
  local name = M.name(code)
  local err = {
    code = code,
    name = name,
    message = message,
    remedy = extra.remedy or client_remedies[name] or editor_remedies[name],
    data = extra.data,
    track_id = extra.track_id,
  }
  return setmetatable(err, error_mt)
end

--- A daemon remedy as it applies inside Neovim: the daemon's command-line flags become the
--- `setup()` options that set them (`--models DIR` is `daemon.models_dir`), and `--checkpoint`
--- is `checkpoint=` of `:Lofi setup`.
---@param remedy any
---@return string?
function M.editor_remedy(remedy)
  if type(remedy) ~= "string" then
    return nil
  end
  local text = remedy:gsub("pass %-%-models DIR", "set daemon.models_dir in setup()")
  text = text:gsub("%-%-models DIR", "daemon.models_dir"):gsub("%-%-models", "daemon.models_dir")
  text =
    text:gsub("%-%-cache%-dir DIR", "daemon.cache_dir"):gsub("%-%-cache%-dir", "daemon.cache_dir")
  text = text:gsub("%-%-checkpoint DIR", "checkpoint=DIR"):gsub("%-%-checkpoint", "checkpoint=")
  return text
end

--- Turn a JSON-RPC `error` member into an error table.
---@param raw {code: integer, message: string, data?: table}
---@return lofi.Error
function M.from_response(raw)
  local data = type(raw.data) == "table" and raw.data or {}
  local remedy = M.editor_remedy(data.remedy)
  local err = M.new(raw.code, raw.message or "unknown error", { remedy = remedy, data = data })
  if type(data.name) == "string" then
    err.name = data.name
  end
  return err
end

--- Turn a `generation_error` notification into an error table.
---@param params {track_id: string, code: integer, name?: string, message: string, remedy?: string}
---@return lofi.Error
function M.from_notification(params)
  local err = M.new(params.code, params.message or "generation failed", {
    remedy = M.editor_remedy(params.remedy),
    track_id = params.track_id,
  })
  if type(params.name) == "string" then
    err.name = params.name
  end
  return err
end

--- One line for messages: "NAME: message (remedy)".
---@param err lofi.Error
---@return string
function M.format(err)
  local text = string.format("%s: %s", err.name or M.name(err.code), err.message)
  if err.remedy and err.remedy ~= "" then
    text = text .. "\n" .. err.remedy
  end
  return text
end

return M
