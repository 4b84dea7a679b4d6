-- The audio tasks end to end: the real daemon with the tiny models extends and repaints a
-- track made in the same session.
local t = require("lofi_test")

--- Record every generation event (Lua side) in order.
---@return {name: string, data: table}[]
local function record_events()
  local seen = {}
  for _, name in ipairs(require("lofi.events").names()) do
    if name:match("^generation_") then
      require("lofi").on(name, function(data)
        table.insert(seen, { name = name, data = data })
      end)
    end
  end
  return seen
end

--- The events of one track, with runs of progress folded into one name.
---@param seen {name: string, data: table}[]
---@param track_id string
---@return string[]
local function names_for(seen, track_id)
  local names = {}
  for _, item in ipairs(seen) do
    if item.data.track_id == track_id and names[#names] ~= item.name then
      table.insert(names, item.name)
    end
  end
  return names
end

local original_select = vim.ui.select

t.describe("audio tasks", function()
  t.after_each(function()
    vim.ui.select = original_select
  end)

  t.it("extend the current track and repaint a part of it, as generations", function()
    local lofi = require("lofi")
    lofi.setup(t.config({ generate = { steps = 2 } }))
    local first
    lofi.generate({ prompt = "rainy night lofi", duration = 5, seed = 4 }, function(err, track)
      t.eq(err, nil)
      first = track
    end)
    t.wait(60000, function()
      return first ~= nil
    end, "the first track")

    -- :Lofi extend works on the last track made in this session.
    local seen = record_events()
    vim.cmd("Lofi extend right=5")
    local longer
    t.wait(60000, function()
      local last = seen[#seen]
      longer = last and last.name == "generation_complete" and last.data or nil
      return longer ~= nil or (last and last.name == "generation_error")
    end, "the extended track")
    t.ok(longer, "extend failed: " .. vim.inspect(seen[#seen]))
    t.neq(longer.track_id, first.track_id)
    t.eq(names_for(seen, longer.track_id), {
      "generation_start",
      "generation_progress",
      "generation_complete",
    })
    t.eq(seen[1].data.task, "extend")
    t.eq(longer.task, "extend")
    t.eq(longer.prompt, first.prompt, "the source's prompt")
    t.eq(longer.seed, first.seed, "the source's seed")
    t.ok(
      longer.duration_sec >= first.duration_sec + 4.5,
      string.format("%.2f s extended by 5 s gave %.2f s", first.duration_sec, longer.duration_sec)
    )
    t.ok(vim.uv.fs_stat(longer.path), "the extended file exists")
    t.ok(vim.uv.fs_stat(first.path), "the source is kept")
    t.eq(lofi.last_track().track_id, longer.track_id)

    -- The same through the Lua API: repaint two seconds of the extended track.
    local painted
    lofi.generate(
      { task = "repaint", src = longer.track_id, repaint_start = 1, repaint_end = 3 },
      function(err, track)
        painted = { err = err, track = track }
      end
    )
    t.wait(60000, function()
      return painted ~= nil
    end, "the repainted track")
    t.eq(painted.err, nil)
    t.eq(painted.track.task, "repaint")
    t.ok(
      math.abs(painted.track.duration_sec - longer.duration_sec) < 0.1,
      "a repaint keeps the length"
    )

    -- A region past the end: the daemon's error is shown as for :Lofi generate.
    local messages = t.capture_notify()
    vim.cmd("Lofi repaint 0:30 0:40 track=" .. longer.track_id)
    t.wait(30000, function()
      return #messages > 0
    end, "the error message")
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, "INVALID_PARAMETER: repaint_start 30 s to repaint_end 40 s")
    t.contains(messages[1].msg, "must lie inside the source")

    -- :Lofi tracks retake on the extended track (the daemon lists its task): refused.
    local offered
    vim.ui.select = function(items, opts, on_choice)
      offered = vim.tbl_map(opts.format_item, items)
      for i, item in ipairs(items) do
        if item.track_id == longer.track_id then
          on_choice(item, i)
        end
      end
    end
    vim.cmd("Lofi tracks retake variance=0.2")
    t.wait(10000, function()
      return #messages > 1
    end, "the retake refusal")
    t.eq(#offered, 3)
    t.contains(table.concat(offered, "\n"), "rainy night lofi  (extend, 10 s, seed 4)")
    t.contains(messages[2].msg, "was made by extend from a source and cannot be retaken")
    t.contains(messages[2].msg, ":Lofi repaint START END")
    t.eq(lofi.active(), {}, "nothing is left waiting")
  end)
end)
