--- `:Lofi radio`: runs what `lofi.radio_args` parsed through the public API (`lofi.radio`),
--- and words the station's status.
local errors = require("lofi.errors")
local radio_args = require("lofi.radio_args")
local user = require("lofi.user")

local M = {}

M.USAGE = "radio [prompt] [segment=N] [context=N] [crossfade=N] [variation=N] "
  .. "| radio stop|skip|pause|resume|like [all]|save [file]|status"

---@param value any
---@param fmt string
---@return string?
local function num(value, fmt)
  return type(value) == "number" and fmt:format(value) or nil
end

--- The `radio.status` answer as lines for a message.
---@param result table
---@return string
function M.describe(result)
  if result.status ~= "playing" then
    return "radio: no station is playing"
  end
  local cfg = type(result.config) == "table" and result.config or {}
  local parts = vim.tbl_filter(function(part)
    return part ~= nil
  end, {
    result.playing_index ~= nil
        and string.format("segment %d of %d", result.playing_index + 1, result.segments or 0)
      or string.format("%d segment(s), not playing yet", result.segments or 0),
    num(result.buffer_ahead_sec, "%.0f s ahead"),
    result.generating and "generating" or nil,
    result.starved and "filling from the library" or nil,
    num(result.rtf, "%.2fx real time"),
  })
  local settings = vim.tbl_filter(function(part)
    return part ~= nil
  end, {
    num(cfg.segment_sec, "segment=%g"),
    num(cfg.context_sec, "context=%g"),
    num(cfg.crossfade_sec, "crossfade=%g"),
    num(cfg.variation, "variation=%d"),
    num(cfg.seed, "seed=%d"),
  })
  return string.format(
    "📻 %s\n  %s\n  %s (station %s)",
    tostring(result.prompt),
    table.concat(parts, ", "),
    table.concat(settings, " "),
    tostring(result.station_id)
  )
end

--- Run `:Lofi radio` with its arguments.
---@param args string[]
function M.run(args)
  local command, err = radio_args.parse(args)
  if not command then
    user.notify_error(errors.new(errors.client.INVALID_OPTION, err --[[@as string]]))
    return
  end
  local radio = require("lofi").radio
  local action = command.action
  if action == "start" then
    radio.start(command.opts)
  elseif action == "stop" then
    if not radio.stop() then
      user.notify("no radio station is playing")
    end
  elseif action == "like" then
    radio.like({ all = command.all })
  elseif action == "save" then
    radio.save(command.path)
  elseif action == "status" then
    radio.status(function(status_err, result)
      if status_err then
        user.notify_error(status_err)
      else
        user.notify(M.describe(result or {}))
      end
    end)
  else
    radio[action]()
  end
end

return M
