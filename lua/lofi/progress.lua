--- The progress float: a small window in a corner that never takes the focus.
local one_line = require("lofi.text").one_line

local M = {}

local BAR_FULL = "█"
local BAR_EMPTY = "░"

---@class lofi.ProgressView
---@field prompt? string
---@field status string "queued"|"running"
---@field percent? number
---@field phase? string
---@field step? integer
---@field total_steps? integer
---@field eta_sec? number
---@field position? integer
---@field queued? integer other generations waiting

local state = {
  ---@type integer?
  buf = nil,
  ---@type integer?
  win = nil,
  ns = vim.api.nvim_create_namespace("lofi_progress"),
}

local function define_highlights()
  vim.api.nvim_set_hl(0, "LofiProgress", { link = "NormalFloat", default = true })
  vim.api.nvim_set_hl(0, "LofiProgressBorder", { link = "FloatBorder", default = true })
  vim.api.nvim_set_hl(0, "LofiProgressBar", { link = "Special", default = true })
  vim.api.nvim_set_hl(0, "LofiProgressTitle", { link = "Title", default = true })
end

---@param text string
---@param width integer
---@return string
local function truncate(text, width)
  if vim.fn.strdisplaywidth(text) <= width then
    return text
  end
  return vim.fn.strcharpart(text, 0, math.max(width - 1, 0)) .. "…"
end

--- A bar of `width` cells for `percent`.
---@param percent number
---@param width integer
---@return string
function M.bar(percent, width)
  local filled = math.floor(math.max(0, math.min(percent, 100)) / 100 * width + 0.5)
  return string.rep(BAR_FULL, filled) .. string.rep(BAR_EMPTY, width - filled)
end

--- The lines of the float for a view (pure; used by the tests).
---@param view lofi.ProgressView
---@param width integer
---@return string[] lines
---@return integer bar_bytes byte length of the bar on line 2 (for highlighting)
function M.render(view, width)
  -- A buffer line cannot hold a newline: a multi-line prompt is shown on one line.
  local title = "lofi: " .. one_line(view.prompt or "")
  if view.queued and view.queued > 0 then
    title = string.format("%s (+%d queued)", title, view.queued)
  end
  local lines = { truncate(title, width) }
  if view.status == "queued" then
    local where = view.position and string.format(" (position %d)", view.position) or ""
    lines[2] = truncate("queued" .. where, width)
    return lines, 0
  end
  local percent = view.percent or 0
  local detail = string.format(" %3d%%", math.floor(percent + 0.5))
  if view.phase then
    detail = detail .. " " .. view.phase
  end
  if view.eta_sec and view.eta_sec > 0 then
    detail = detail .. string.format(" ~%ds", math.ceil(view.eta_sec))
  end
  local bar_width = math.max(width - vim.fn.strdisplaywidth(detail), 4)
  local bar = M.bar(percent, bar_width)
  lines[2] = truncate(bar .. detail, width)
  return lines, #bar
end

---@param cfg lofi.ProgressConfig
---@param height integer
---@return table win_config
local function placement(cfg, height)
  local width = math.min(cfg.width, math.max(vim.o.columns - 4, 10))
  local border = cfg.border ~= "none" and 2 or 0
  local top = cfg.position:match("^top") ~= nil
  local right = cfg.position:match("right$") ~= nil
  local row = top and (vim.o.showtabline > 0 and 1 or 0)
    or math.max(vim.o.lines - vim.o.cmdheight - height - border - 1, 0)
  local col = right and math.max(vim.o.columns - width - border, 0) or 0
  return {
    relative = "editor",
    row = row,
    col = col,
    width = width,
    height = height,
    style = "minimal",
    focusable = false,
    border = cfg.border,
    zindex = 60,
    noautocmd = true,
  }
end

--- Show or update the float.
---@param view lofi.ProgressView
function M.update(view)
  local cfg = require("lofi.config").get().progress
  if not cfg.enabled then
    return
  end
  define_highlights()
  local win_config = placement(cfg, 2)
  local lines, bar_bytes = M.render(view, win_config.width)
  if not (state.buf and vim.api.nvim_buf_is_valid(state.buf)) then
    state.buf = vim.api.nvim_create_buf(false, true)
    vim.bo[state.buf].bufhidden = "wipe"
  end
  vim.api.nvim_buf_set_lines(state.buf, 0, -1, false, lines)
  vim.api.nvim_buf_clear_namespace(state.buf, state.ns, 0, -1)
  vim.api.nvim_buf_set_extmark(state.buf, state.ns, 0, 0, {
    end_col = math.min(#lines[1], 5),
    hl_group = "LofiProgressTitle",
  })
  if bar_bytes > 0 then
    vim.api.nvim_buf_set_extmark(state.buf, state.ns, 1, 0, {
      end_col = bar_bytes,
      hl_group = "LofiProgressBar",
    })
  end
  if state.win and vim.api.nvim_win_is_valid(state.win) then
    win_config.noautocmd = nil
    vim.api.nvim_win_set_config(state.win, win_config)
  else
    state.win = vim.api.nvim_open_win(state.buf, false, win_config)
    vim.wo[state.win].winhighlight = "Normal:LofiProgress,FloatBorder:LofiProgressBorder"
    vim.wo[state.win].wrap = false
  end
end

--- Close the float if it is open.
function M.close()
  if state.win and vim.api.nvim_win_is_valid(state.win) then
    vim.api.nvim_win_close(state.win, true)
  end
  state.win = nil
  state.buf = nil
end

---@return integer? win the float's window, while it is open
function M.win()
  if state.win and vim.api.nvim_win_is_valid(state.win) then
    return state.win
  end
  return nil
end

return M
