--- `:help lofi` without a plugin manager: plugin managers run `:helptags` on install, but a
--- plugin added to 'runtimepath' by hand has no `doc/tags`. Generate them once, on startup,
--- when the file is missing and the folder is writable.
local M = {}

--- Build `DOC/tags` when `DOC/lofi.txt` exists, `DOC/tags` does not and `DOC` is writable.
---@param doc string the plugin's doc folder
---@return boolean built
function M.ensure(doc)
  local uv = vim.uv
  if not uv.fs_stat(vim.fs.joinpath(doc, "lofi.txt")) then
    return false
  end
  if uv.fs_stat(vim.fs.joinpath(doc, "tags")) or not uv.fs_access(doc, "W") then
    return false
  end
  return (pcall(vim.cmd.helptags, vim.fn.fnameescape(doc)))
end

return M
