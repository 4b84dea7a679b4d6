--- File logging for the plugin (`stdpath("log")/lofi.log`) and the daemon's stderr.
---
--- Each write opens the file in append mode and closes it again: messages are rare, and a
--- file renamed by rotation (ours or the daemon's) is never written through a stale handle.
local M = {}

M.levels = { trace = 0, debug = 1, info = 2, warn = 3, error = 4, off = 5 }

local MAX_BYTES = 1024 * 1024

---@class lofi.LogState
---@field level integer
---@field handler? fun(level: string, line: string)
local state = { level = M.levels.info, handler = nil }

---@return string path of the plugin log
function M.path()
  return vim.fs.joinpath(vim.fn.stdpath("log") --[[@as string]], "lofi.log")
end

---@return string path of the daemon log (its own log plus its stderr)
function M.daemon_path()
  return vim.fs.joinpath(vim.fn.stdpath("log") --[[@as string]], "lofi-daemon.log")
end

---@param name string one of the keys of `M.levels`
function M.set_level(name)
  state.level = M.levels[name] or M.levels.info
end

--- Send log lines to `fn` instead of the file (tests), or back to the file with nil.
---@param fn? fun(level: string, line: string)
function M.set_handler(fn)
  state.handler = fn
end

--- Move `path` to `path.1` once it is larger than `max_bytes`.
---@param path string
---@param max_bytes? integer
function M.rotate(path, max_bytes)
  local stat = vim.uv.fs_stat(path)
  if stat and stat.size > (max_bytes or MAX_BYTES) then
    vim.uv.fs_rename(path, path .. ".1")
  end
end

--- Append text to a file, creating its folder; failures are ignored (logging must never break
--- the editor).
---@param path string
---@param text string
---@param rotate? boolean rotate the file when it is large (default true; false for a file
---   that another writer rotates)
function M.append(path, text, rotate)
  if rotate ~= false then
    M.rotate(path)
  end
  vim.fn.mkdir(vim.fs.dirname(path), "p")
  local file = io.open(path, "a")
  if file then
    file:write(text)
    file:close()
  end
end

---@param level string
---@param fmt string
---@param ... any
local function write(level, fmt, ...)
  if M.levels[level] < state.level then
    return
  end
  local ok, message = pcall(string.format, fmt, ...)
  if not ok then
    message = fmt
  end
  local line = string.format("%s [%s] %s\n", os.date("%Y-%m-%d %H:%M:%S"), level:upper(), message)
  if state.handler then
    state.handler(level, line)
  else
    M.append(M.path(), line)
  end
end

---@param fmt string
---@param ... any
function M.trace(fmt, ...)
  write("trace", fmt, ...)
end

---@param fmt string
---@param ... any
function M.debug(fmt, ...)
  write("debug", fmt, ...)
end

---@param fmt string
---@param ... any
function M.info(fmt, ...)
  write("info", fmt, ...)
end

---@param fmt string
---@param ... any
function M.warn(fmt, ...)
  write("warn", fmt, ...)
end

---@param fmt string
---@param ... any
function M.error(fmt, ...)
  write("error", fmt, ...)
end

return M
