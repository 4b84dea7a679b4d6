--- Which backend generates: the choice and where it comes from, the choice that
--- `:Lofi config backend` saves for later sessions, and the daemon's last `backends.list`
--- answer (for completion, the statusline and the daemon's default).
---
--- Precedence (`:help lofi-backend`): the `backend` option of a call, then
--- `generate.backend` (set by `setup()`, or by `:Lofi config backend` for this session), then
--- the saved choice, then the daemon's default (its only installed backend, else ace-step).
--- Without a configured or saved choice no `backend` is sent, so the daemon's default applies.
---
--- The saved choice is a small JSON file, `stdpath("state")/lofi/backend.json`, written
--- atomically (a new file in the same folder, then renamed over the old one). A file the
--- plugin did not write (no `written_by` mark, not a plain file, a link) is never read as a
--- choice, overwritten or removed.
local M = {}

--- The backends this plugin knows, for completion before the daemon has answered.
M.KNOWN = { "ace-step", "ace-step-1.5" }

--- `generate` parameters of ACE-Step v1 that ACE-Step 1.5 turbo does not take (fixed 8-step
--- schedule, no guidance, no LoRA variants), for when the daemon has not listed its backends.
local V1_ONLY = { "infer_steps", "scheduler", "guidance_scale", "cfg_type", "variant" }

local MARK = "lofi.nvim"
local MAX_BYTES = 4096

---@type lofi.Backend[]? the daemon's last `backends.list` answer
local listed = nil
---@type {name: string?, err: string?}? the saved choice, once read
local saved = nil

---@return string path of the saved choice
function M.state_path()
  return vim.fs.joinpath(vim.fn.stdpath("state") --[[@as string]], "lofi", "backend.json")
end

---@param name any
---@return boolean
local function is_name(name)
  return type(name) == "string" and name:match("^[%w][%w._-]*$") ~= nil and #name <= 64
end

--- Read the state file: the name saved in it (nil when there is none) and a problem, when
--- the file is there but is not one the plugin wrote.
---@param path string
---@return string? name
---@return string? err
local function read_file(path)
  local stat = vim.uv.fs_lstat(path)
  if not stat then
    return nil, nil
  end
  if stat.type ~= "file" or stat.size > MAX_BYTES then
    return nil, path .. " is not a file lofi.nvim wrote"
  end
  local fd = vim.uv.fs_open(path, "r", 0)
  local data = fd and vim.uv.fs_read(fd, stat.size, 0)
  if fd then
    vim.uv.fs_close(fd)
  end
  local ok, decoded = pcall(vim.json.decode, data or "")
  if not ok or type(decoded) ~= "table" or decoded.written_by ~= MARK then
    return nil, path .. " is not a file lofi.nvim wrote"
  end
  if not is_name(decoded.backend) then
    return nil, path .. " names no backend"
  end
  return decoded.backend, nil
end

--- The backend saved by `:Lofi config backend` (read once per session), and the problem with
--- the state file when it is there but unusable (then no backend is saved).
---@return string? name
---@return string? err
function M.saved()
  if saved == nil then
    local name, err = read_file(M.state_path())
    saved = { name = name, err = err }
    if err then
      require("lofi.log").warn("ignoring the saved backend: %s", err)
    end
  end
  return saved.name, saved.err
end

--- Save `name` as the backend of later sessions (nil: forget the saved one).
---@param name string?
---@return boolean ok
---@return string? err why nothing was saved
function M.save(name)
  local path = M.state_path()
  local _, foreign = read_file(path)
  if foreign then
    return false, "not saved: " .. foreign .. " (remove it to save a backend)"
  end
  saved = nil
  if name == nil then
    local ok, err = os.remove(path)
    if not ok and vim.uv.fs_lstat(path) then
      return false, "could not remove " .. path .. ": " .. tostring(err)
    end
    return true, nil
  end
  local dir = vim.fs.dirname(path)
  vim.fn.mkdir(dir, "p", tonumber("700", 8))
  local tmp = string.format("%s.%d.tmp", path, vim.uv.os_getpid())
  local body = vim.json.encode({ written_by = MARK, version = 1, backend = name }) .. "\n"
  local fd, open_err = vim.uv.fs_open(tmp, "wx", tonumber("600", 8))
  if not fd then
    return false, "could not write " .. tmp .. ": " .. tostring(open_err)
  end
  local written = vim.uv.fs_write(fd, body, 0)
  local synced = vim.uv.fs_fsync(fd)
  vim.uv.fs_close(fd)
  local renamed, rename_err = false, "short write"
  if written == #body and synced then
    renamed, rename_err = vim.uv.fs_rename(tmp, path)
  end
  if not renamed then
    vim.uv.fs_unlink(tmp)
    return false, "could not write " .. path .. ": " .. tostring(rename_err)
  end
  return true, nil
end

--- Keep the daemon's `backends.list` answer (`lofi.backends()` calls this).
---@param backends any
function M.remember(backends)
  if type(backends) == "table" and vim.islist(backends) then
    listed = backends
  end
end

---@return lofi.Backend[]? backends the daemon's last `backends.list` answer
function M.listed()
  return listed
end

--- The backend names for completion: the daemon's (from its last answer) and the known ones.
---@return string[]
function M.names()
  local names = vim.deepcopy(M.KNOWN)
  for _, backend in ipairs(listed or {}) do
    if type(backend) == "table" and is_name(backend.name) then
      if not vim.list_contains(names, backend.name) then
        names[#names + 1] = backend.name
      end
    end
  end
  table.sort(names)
  return names
end

--- The daemon's default backend, from a `backends.list` answer (the last one by default): the
--- entry marked `default`; from a daemon that marks none, its rule (the only installed
--- backend, else ace-step).
---@param backends? lofi.Backend[]
---@return string?
function M.daemon_default(backends)
  local ready, names = {}, {}
  for _, backend in ipairs(backends or listed or {}) do
    if type(backend) == "table" and is_name(backend.name) then
      if backend.default == true then
        return backend.name
      end
      names[#names + 1] = backend.name
      if backend.status == "ready" then
        ready[#ready + 1] = backend.name
      end
    end
  end
  if #ready == 1 then
    return ready[1]
  end
  return vim.list_contains(names, "ace-step") and "ace-step" or nil
end

--- Whether `backend` takes the `generate` parameter `param`: false only when it is known not
--- to (the `params` the daemon listed for it, else the v1-only ones on ace-step-1.5). Used to
--- leave out a `generate` default (`steps`, ...) that the backend would refuse; an option the
--- call sets is always sent, so the daemon's refusal names it.
---@param backend? string
---@param param string
---@return boolean
function M.takes(backend, param)
  if backend == nil then
    return true
  end
  for _, entry in ipairs(listed or {}) do
    if type(entry) == "table" and entry.name == backend and type(entry.params) == "table" then
      return vim.list_contains(entry.params, param)
    end
  end
  return not (backend == "ace-step-1.5" and vim.list_contains(V1_ONLY, param))
end

---@alias lofi.BackendSource "option"|"saved"|"daemon"

--- The backend chosen by the configuration or the saved choice (nil: the daemon's default).
---@return string? name
---@return lofi.BackendSource? source
function M.configured()
  local option = require("lofi.config").get().generate.backend
  if option ~= nil then
    return option, "option"
  end
  local name = M.saved()
  if name then
    return name, "saved"
  end
  return nil, nil
end

--- The backend in use: the configured one, else the daemon's default (from `backends`, else
--- its last answer); nil when neither is known yet.
---@param backends? lofi.Backend[]
---@return string? name
---@return lofi.BackendSource? source
function M.in_use(backends)
  local name, source = M.configured()
  if name then
    return name, source
  end
  local default = M.daemon_default(backends)
  if default then
    return default, "daemon"
  end
  return nil, nil
end

local SOURCE_TEXT = {
  option = "generate.backend",
  saved = "saved with :Lofi config backend",
  daemon = "the daemon's default",
}

--- "ace-step-1.5 (saved with :Lofi config backend)", or the daemon's default when unknown.
---@param backends? lofi.Backend[]
---@return string
function M.describe(backends)
  local name, source = M.in_use(backends)
  if not name then
    return "the daemon's default"
  end
  return string.format("%s (%s)", name, SOURCE_TEXT[source])
end

--- One line with each backend's install status: "ace-step ready, ace-step-1.5 not installed".
---@param backends lofi.Backend[]
---@return string
function M.summary(backends)
  local parts = {}
  for _, backend in ipairs(backends) do
    if type(backend) == "table" then
      local status = tostring(backend.status or "?"):gsub("_", " ")
      parts[#parts + 1] = string.format("%s %s", tostring(backend.name), status)
    end
  end
  return #parts > 0 and table.concat(parts, ", ") or "none"
end

return M
