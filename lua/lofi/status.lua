--- A short statusline string: what is generating, installing or playing ("" when idle): a
--- radio station shows its prompt and the seconds of audio ready ahead (`📻 rainy jazzhop
--- +45s`; "…" before the daemon reported any). A generation names its backend when it is
--- known (`♪ 42% ace-step-1.5`); `backend()` is the backend in use, for a component of its own.
---
--- Use `require("lofi.status").get` as a statusline component and `is_active` as its
--- condition. The string is escaped for 'statusline' ("%" doubled). Every change of what it
--- shows schedules a statusline redraw (`lofi.redraw`).
local one_line = require("lofi.text").one_line

local M = {}

local PROMPT_CHARS = 24

---@param text string
---@return string
local function short(text)
  text = one_line(text)
  if vim.fn.strchars(text) <= PROMPT_CHARS then
    return text
  end
  return vim.fn.strcharpart(text, 0, PROMPT_CHARS - 1) .. "…"
end

--- "⚙ setup 40% export" while `:Lofi setup` runs, nil otherwise.
---@return string?
local function setup_text()
  local install = package.loaded["lofi.install"]
  if not (install and install.running()) then
    return nil
  end
  local params = install.progress() or {}
  local percent = tonumber(params.percent)
  local text = "⚙ setup"
  if percent and percent == percent then
    text = string.format("%s %d%%", text, math.floor(percent + 0.5))
  end
  if type(params.phase) == "string" and params.phase ~= "" then
    text = text .. " " .. short(params.phase)
  end
  return text
end

--- "📻 rainy jazzhop +45s" while a radio station plays, nil otherwise.
---@return string?
local function radio_text()
  local radio = package.loaded["lofi.radio"]
  local info = radio and radio.info()
  if not info then
    return nil
  end
  local ahead = info.buffer_ahead_sec
  local buffer = ahead and string.format(" +%ds", math.floor(ahead)) or " …"
  return "📻 " .. (info.paused and "⏸ " or "") .. short(info.prompt) .. buffer
end

--- The status text, unescaped.
---@return string
function M.text()
  local active = require("lofi.generations").active()
  local first = active[1]
  if first then
    local more = #active > 1 and string.format(" +%d", #active - 1) or ""
    more = more .. (first.backend and (" " .. first.backend) or "")
    if first.status == "running" then
      return string.format("♪ %d%%%s", math.floor((tonumber(first.percent) or 0) + 0.5), more)
    end
    return "♪ queued" .. more
  end
  local setup = setup_text()
  if setup then
    return setup
  end
  local radio = radio_text()
  if radio then
    return radio
  end
  local playing = require("lofi.player").current()
  if playing then
    local prompt = playing.track.prompt
    local name = type(prompt) == "string" and prompt or vim.fn.fnamemodify(playing.track.path, ":t")
    return (playing.paused and "⏸ " or "▶ ") .. short(name)
  end
  return ""
end

--- The status for a statusline ("%" escaped as "%%").
---@return string
function M.get()
  return (M.text():gsub("%%", "%%%%"))
end

--- The backend in use ("ace-step-1.5"): the configured one, else the daemon's default once it
--- has listed its backends; "" while neither is known. Escaped for 'statusline'.
---@return string
function M.backend()
  local name = require("lofi.backend").in_use()
  return ((name or ""):gsub("%%", "%%%%"))
end

--- True while something is generating or playing (a lualine `cond`).
---@return boolean
function M.is_active()
  return M.text() ~= ""
end

return M
