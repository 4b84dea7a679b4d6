-- lofi.nvim: only the :Lofi command is defined here; everything else loads on first use.
if vim.g.loaded_lofi or vim.g.lofi_disable then
  return
end
vim.g.loaded_lofi = true

-- `:help lofi` when the plugin was added to 'runtimepath' by hand (no doc/tags yet).
local doc =
  vim.fs.joinpath(vim.fs.dirname(vim.fs.dirname(debug.getinfo(1, "S").source:sub(2))), "doc")
if not vim.uv.fs_stat(vim.fs.joinpath(doc, "tags")) then
  require("lofi.helptags").ensure(doc)
end

vim.api.nvim_create_user_command("Lofi", function(info)
  require("lofi.commands").run(info)
end, {
  nargs = "*",
  desc = "lofi.nvim: generate, play and manage lofi tracks",
  complete = function(arglead, cmdline)
    return require("lofi.commands").complete(arglead, cmdline)
  end,
})
