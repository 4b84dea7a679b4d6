--- The audio tasks the daemon runs (docs/protocol.md, `generate`): their names, the per-call
--- options of `generate()` that belong to each, and the `:Lofi edit` presets. Data only: the
--- option schema (`lofi.config`) and the request builder (`lofi.generate_params`) read it.
local M = {}

---@alias lofi.Task "text2music"|"retake"|"repaint"|"extend"|"audio2audio"|"edit"

--- Every task, text2music (the default) first.
---@type lofi.Task[]
M.TASKS = { "text2music", "retake", "repaint", "extend", "audio2audio", "edit" }

--- Tasks that work on a source (a cached track or an audio file): their length is the
--- source's, so `duration` is never sent for them.
---@type table<string, boolean>
M.SOURCE = { repaint = true, extend = true, audio2audio = true, edit = true }

--- Tasks whose second noise comes from `retake_seed` (drawn by the plugin when not given, so
--- each command gives a new take).
---@type table<string, boolean>
M.RETAKE_SEEDED = { retake = true, repaint = true, extend = true }

--- The per-call options of the tasks (sent under the same names), their types as in the
--- option schema (`lofi.config`), and the tasks that take each.
---@type table<string, {type: string|table, tasks: string[]}>
M.fields = {
  retake_variance = { type = "number", tasks = { "retake", "repaint", "extend" } },
  retake_seed = { type = "nonneg", tasks = { "retake", "repaint", "extend" } },
  repaint_start = { type = "number", tasks = { "repaint" } },
  repaint_end = { type = "number", tasks = { "repaint" } },
  extend_left = { type = "number", tasks = { "extend" } },
  extend_right = { type = "number", tasks = { "extend" } },
  ref_strength = { type = "number", tasks = { "audio2audio" } },
  edit_prompt = { type = "string", tasks = { "edit" } },
  edit_n_min = { type = "number", tasks = { "edit" } },
  edit_n_max = { type = "number", tasks = { "edit" } },
  edit_n_avg = { type = "posint", tasks = { "edit" } },
}

--- `:Lofi edit` presets: how much of the denoising the edit redoes (`edit_n_min`,
--- `edit_n_max`), as the ACE-Step UI names them (acestep-v1.md §13.5).
---@type table<string, {n_min: number, n_max: number}>
M.EDIT_PRESETS = {
  remix = { n_min = 0.2, n_max = 0.4 },
  only_lyrics = { n_min = 0.6, n_max = 1.0 },
}

--- The per-call `generate()` options of the tasks, for the option schema: `task`, `src` and
--- every field above.
---@return table<string, string|table>
function M.options()
  local options = {
    task = { one_of = vim.deepcopy(M.TASKS) },
    src = "string",
  }
  for name, field in pairs(M.fields) do
    options[name] = field.type
  end
  return options
end

--- The first option in `opts` that `task` does not take, if any (names sorted, so the message
--- is stable).
---@param task string
---@param opts table
---@return string? name
function M.foreign_field(task, opts)
  local names = vim.tbl_keys(M.fields)
  table.sort(names)
  for _, name in ipairs(names) do
    if opts[name] ~= nil and not vim.list_contains(M.fields[name].tasks, task) then
      return name
    end
  end
  return nil
end

return M
