--- Statusline redraws: every change of what `lofi.status` shows (a generation queued, running,
--- finished, failed or cancelled; a setup step; the player starting, pausing or exiting) asks
--- for one. Requests made in the same tick are coalesced into one scheduled `:redrawstatus!`,
--- so a statusline component never keeps showing a state that is gone.
local M = {}

local pending = false

--- Redraw every statusline soon (scheduled; safe from any callback, coalesced).
function M.statusline()
  if pending then
    return
  end
  pending = true
  vim.schedule(function()
    pending = false
    -- Redrawing can fail while the editor is exiting or in a restricted context.
    pcall(vim.cmd.redrawstatus, { bang = true })
  end)
end

return M
