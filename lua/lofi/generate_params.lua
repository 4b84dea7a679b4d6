--- The parameters of one `generate` request: `generate()` options checked against the option
--- schema (`lofi.config`), unset ones taken from the `generate` defaults, text checked before
--- anything is sent (the daemon reads UTF-8 JSON, so bytes that are not UTF-8 would never
--- reach it as a request).
---
--- Audio tasks (`lofi.task_spec`): `task` is sent unless it is text2music, the task's own
--- options under their names, and `src` as `src_track_id`/`src_path` (`ref_track_id`/
--- `ref_path` for audio2audio; `lofi.sources` decides which). When `src` is a cached track,
--- its parameters (prompt, seed, steps, ...) fill what the call does not set, before the
--- `generate` defaults; audio2audio takes only its prompt. A retake takes no source: the track
--- only gives it the parameters to repeat.
---
--- `backend` is sent only when one is chosen (the call's option, `generate.backend`, the saved
--- choice: `lofi.backend`), so the daemon's default applies otherwise. The song options of
--- ACE-Step 1.5 (`lofi.song_spec`) are sent when set; the daemon refuses them on a backend
--- without them, as it refuses any option the call sets that the backend lacks. A `generate`
--- default the backend lacks (`steps` on ace-step-1.5) is not sent.
local backend_choice = require("lofi.backend")
local config = require("lofi.config")
local errors = require("lofi.errors")
local sources = require("lofi.sources")
local task_spec = require("lofi.task_spec")
local text = require("lofi.text")

local M = {}

-- The daemon parameter each generate() option becomes.
local param_names = {
  prompt = "prompt",
  duration = "duration_sec",
  seed = "seed",
  steps = "infer_steps",
  scheduler = "scheduler",
  guidance_scale = "guidance_scale",
  format = "format",
  priority = "priority",
  backend = "backend",
  variant = "variant",
}
for name, field in pairs(require("lofi.song_spec").fields) do
  param_names[name] = field.param
end

---@param message string
---@return lofi.Error
local function invalid(message)
  return errors.new(errors.client.INVALID_OPTION, message)
end

--- The task that made a track ("text2music" for tracks from before the audio tasks).
---@param track lofi.Track
---@return string
function M.track_task(track)
  local task = track.task
  if task == nil and type(track.params) == "table" then
    task = track.params.task
  end
  return type(task) == "string" and task or "text2music"
end

--- The parameters a task takes over from its source track (daemon names): every scalar of the
--- track's `params` (else its prompt, seed, duration and format), without the task fields.
---@param task string
---@param track lofi.Track
---@return table
local function track_params(task, track)
  local base = {}
  if type(track.params) == "table" then
    for key, value in pairs(track.params) do
      if vim.list_contains({ "string", "number", "boolean" }, type(value)) then
        base[key] = value
      end
    end
  end
  for _, key in ipairs({ "prompt", "seed", "duration_sec", "format", "variant" }) do
    if base[key] == nil and track[key] ~= nil then
      base[key] = track[key]
    end
  end
  base.task = nil
  for name in pairs(task_spec.fields) do
    base[name] = nil
  end
  if task == "audio2audio" then
    return { prompt = base.prompt }
  end
  return base
end

--- Checks of the task options that need no daemon: which task takes what, and what each needs.
---@param task string
---@param opts table
---@param track? lofi.Track the source track, when `src` is one
---@return lofi.Error?
local function check_task(task, opts, track)
  local foreign = task_spec.foreign_field(task, opts)
  if foreign then
    local takes = table.concat(task_spec.fields[foreign].tasks, ", ")
    return invalid(string.format("`%s` is for task %s, not %s", foreign, takes, task))
  end
  if opts.src == "" then
    return invalid("`src` must not be empty: give a track id or an audio file")
  end
  if task == "text2music" and opts.src ~= nil then
    return invalid("`src` is for the tasks retake, repaint, extend, audio2audio and edit")
  end
  if task_spec.SOURCE[task] then
    if opts.src == nil then
      return invalid(string.format("task %s needs `src`: a track id or an audio file", task))
    end
    if opts.duration ~= nil then
      return invalid(string.format("`duration` is not used by %s: the source sets it", task))
    end
  end
  if task == "retake" and opts.src ~= nil and sources.classify(opts.src) ~= "track" then
    return invalid(string.format("retake needs a cached track id as `src`, got %q", opts.src))
  end
  if task == "edit" and (opts.edit_prompt == nil or vim.trim(opts.edit_prompt) == "") then
    return invalid("task edit needs `edit_prompt`, the new prompt")
  end
  if task == "edit" and opts.scheduler ~= nil and opts.scheduler ~= "euler" then
    return invalid(
      string.format("task edit runs with the euler scheduler only, got %q", opts.scheduler)
    )
  end
  local made_by = track and M.track_task(track)
  if task == "retake" and made_by and task_spec.SOURCE[made_by] then
    return invalid(
      string.format(
        "track %s was made by %s from a source and cannot be retaken; "
          .. "use repaint (:Lofi repaint START END) to redo a part of it",
        tostring(track.track_id),
        made_by
      )
    )
  end
  return nil
end

--- A random seed for the second noise of retake, repaint and extend (0 to 2^32 - 1).
---@return integer
function M.random_seed()
  local bytes = vim.uv.random(4)
  local b1, b2, b3, b4 = bytes:byte(1, 4)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

--- Check generate() options and turn them into daemon parameters.
---@param opts lofi.GenerateOpts|string
---@param track? lofi.Track the cached track `opts.src` names (`lofi.sources.find_track`)
---@return table? params
---@return lofi.Error? err INVALID_OPTION naming the option, or INVALID_PROMPT
function M.build(opts, track)
  if type(opts) == "string" then
    opts = { prompt = opts }
  end
  if type(opts) ~= "table" then
    return nil, invalid("generate() takes a prompt or a table of options, got " .. type(opts))
  end
  local problem = config.check_generate(opts)
  if problem then
    return nil, invalid(problem)
  end
  local task = opts.task or "text2music"
  local task_err = check_task(task, opts, track)
  if task_err then
    return nil, task_err
  end
  local base = track and track_params(task, track) or {}
  local defaults = config.get().generate
  local params = vim.deepcopy(base)
  local target = opts.backend or base.backend or backend_choice.configured()
  target = target or backend_choice.daemon_default()
  for name, key in pairs(param_names) do
    local value = opts[name]
    if value == nil then
      value = base[key]
    end
    -- A default the backend does not take (`steps` on ace-step-1.5) is left out.
    if value == nil and backend_choice.takes(target, key) then
      value = defaults[name]
    end
    if value == nil and name == "backend" then
      value = backend_choice.configured()
    end
    params[key] = value
  end
  if params.variant == "" or params.variant == "none" then
    params.variant = nil
  end
  for name in pairs(task_spec.fields) do
    params[name] = opts[name]
  end
  if task ~= "text2music" then
    params.task = task
  end
  if task_spec.SOURCE[task] then
    params.duration_sec = nil
    local kind, value = sources.classify(opts.src)
    local prefix = task == "audio2audio" and "ref_" or "src_"
    params[prefix .. (kind == "track" and "track_id" or "path")] = value
  end
  if task_spec.RETAKE_SEEDED[task] and params.retake_seed == nil then
    params.retake_seed = M.random_seed()
  end
  if task == "edit" then
    params.scheduler = "euler" -- upstream FlowEdit steps with Euler only (acestep-v1.md §13.5)
  end
  if not text.is_utf8(params.prompt) then
    return nil,
      errors.new(
        errors.daemon.INVALID_PROMPT,
        "the prompt is not valid UTF-8 text",
        { remedy = "Give the prompt as UTF-8 text (check the file or register it came from)." }
      )
  end
  if vim.trim(params.prompt) == "" then
    return nil, invalid("`prompt` must not be empty")
  end
  local option_of = {}
  for name, key in pairs(param_names) do
    option_of[key] = name
  end
  for key, value in pairs(params) do
    if type(value) == "string" and not text.is_utf8(value) then
      return nil, invalid("`" .. (option_of[key] or key) .. "` is not valid UTF-8")
    end
  end
  return params, nil
end

return M
