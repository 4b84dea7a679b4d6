--- A short statusline string: what is generating or playing ("" when idle).
---
--- Use `require("lofi.status").get` as a statusline component and `is_active` as its
--- condition. The string is escaped for 'statusline' ("%" doubled).
local M = {}

local PROMPT_CHARS = 24

---@param text string
---@return string
local function short(text)
  if vim.fn.strchars(text) <= PROMPT_CHARS then
    return text
  end
  return vim.fn.strcharpart(text, 0, PROMPT_CHARS - 1) .. "…"
end

--- The status text, unescaped.
---@return string
function M.text()
  local active = require("lofi.generations").active()
  local first = active[1]
  if first then
    local more = #active > 1 and string.format(" +%d", #active - 1) or ""
    if first.status == "running" then
      return string.format("♪ %d%%%s", math.floor((first.percent or 0) + 0.5), more)
    end
    return "♪ queued" .. more
  end
  local playing = require("lofi.player").current()
  if playing then
    local name = playing.track.prompt or vim.fn.fnamemodify(playing.track.path, ":t")
    return (playing.paused and "⏸ " or "▶ ") .. short(name)
  end
  return ""
end

--- The status for a statusline ("%" escaped as "%%").
---@return string
function M.get()
  return (M.text():gsub("%%", "%%%%"))
end

--- True while something is generating or playing (a lualine `cond`).
---@return boolean
function M.is_active()
  return M.text() ~= ""
end

return M
