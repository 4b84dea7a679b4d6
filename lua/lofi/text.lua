--- Text checks shared by the modules that send or show user text: UTF-8 validity (the daemon
--- reads JSON, which must be UTF-8) and one-line display forms (a buffer line, a statusline and
--- a title cannot hold a newline).
local M = {}

--- True when `text` is well-formed UTF-8: no stray continuation bytes, no truncated or
--- overlong sequences, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
---@param text string
---@return boolean
function M.is_utf8(text)
  local i, n = 1, #text
  while i <= n do
    local c = text:byte(i)
    local len, min
    if c < 0x80 then
      len = 1
    elseif c >= 0xC2 and c <= 0xDF then
      len, min = 2, 0x80
    elseif c >= 0xE0 and c <= 0xEF then
      len, min = 3, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then
      len, min = 4, 0x10000
    else
      return false
    end
    if len > 1 then
      if i + len - 1 > n then
        return false
      end
      local code = c % (2 ^ (7 - len))
      for k = i + 1, i + len - 1 do
        local b = text:byte(k)
        if b < 0x80 or b > 0xBF then
          return false
        end
        code = code * 64 + (b - 0x80)
      end
      if code < min or code > 0x10FFFF or (code >= 0xD800 and code <= 0xDFFF) then
        return false
      end
    end
    i = i + len
  end
  return true
end

--- `text` on one line: each run of control characters (newlines, tabs, ...) becomes one space.
--- Bytes that are not UTF-8 stay as they are (callers that send text check `is_utf8` first).
---@param text string
---@return string
function M.one_line(text)
  return (text:gsub("[%c]+", " "))
end

--- "ready: PROMPT (N s)" for a finished track; fields of any type are tolerated (a damaged
--- cache entry can carry a `duration_sec` that is not a number).
---@param track table
---@return string
function M.ready_message(track)
  local name = type(track.prompt) == "string" and M.one_line(track.prompt)
    or tostring(track.track_id)
  local seconds = tonumber(track.duration_sec)
  if seconds and seconds == seconds and math.abs(seconds) ~= math.huge then
    return string.format("ready: %s (%.0f s)", name, seconds)
  end
  return "ready: " .. name
end

return M
