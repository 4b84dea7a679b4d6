--- User paths (`daemon.models_dir`, `daemon.cache_dir`, `daemon.log_file`, `checkpoint=`):
--- taken literally. Only a leading `~` (alone or followed by `/`) becomes the home folder;
--- nothing else is expanded: no environment variables, no wildcards, no backticks (which
--- `vim.fn.expand()` would run through the shell), no `%` or `#` (the current and alternate
--- file names to `expand()`).
local M = {}

--- The path with a leading `~` or `~/` replaced by the home folder; anything else unchanged.
---@param path string
---@return string
function M.expand(path)
  if path == "~" or path:sub(1, 2) == "~/" then
    local home = vim.uv.os_homedir() or vim.env.HOME or "~"
    return home .. path:sub(2)
  end
  return path
end

--- `M.expand`, then made absolute against the current directory (no other change).
---@param path string
---@return string
function M.absolute(path)
  path = M.expand(path)
  if path:sub(1, 1) == "/" or path:match("^%a:[/\\]") then
    return path
  end
  return vim.fs.joinpath(vim.uv.cwd() or ".", path)
end

return M
