--- The options of `radio.start()` (and `:Lofi radio`), checked with the option schema's
--- notation (`lofi.config`), and the `radio.start` request they become: unset ones come from
--- the `radio` section (segment, context, crossfade, variation, prompt) and the `generate`
--- section (steps, scheduler, guidance scale, variant).
local config = require("lofi.config")
local errors = require("lofi.errors")

local M = {}

--- `radio.start()` options and their types (the `lofi.config` schema notation).
M.specs = {
  prompt = "string",
  segment = "number",
  context = "number",
  crossfade = "number",
  variation = "nonneg",
  seed = "nonneg",
  ahead = "posint",
  steps = "posint",
  scheduler = { one_of = config.choices("generate", "scheduler") },
  guidance_scale = "number",
  variant = "string",
}

--- The `radio.start` parameters of `opts`, over the `radio` and `generate` defaults.
---@param opts lofi.RadioStartOpts
---@return table? params
---@return lofi.Error? err
function M.build(opts)
  local names = vim.tbl_keys(opts)
  table.sort(names, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, name in ipairs(names) do
    local spec = M.specs[name]
    if spec == nil then
      local valid = vim.tbl_keys(M.specs)
      table.sort(valid)
      local message = string.format(
        "unknown radio option `%s` (valid: %s)",
        tostring(name),
        table.concat(valid, ", ")
      )
      return nil, errors.new(errors.client.INVALID_OPTION, message)
    end
    local err = config.check_value(name, spec, opts[name])
    if err then
      return nil, errors.new(errors.client.INVALID_OPTION, err)
    end
  end
  local cfg = config.get()
  local radio, gen = cfg.radio, cfg.generate
  local segment = opts.segment or radio.segment
  local variant = opts.variant or gen.variant
  return {
    prompt = opts.prompt or radio.prompt,
    seed = opts.seed,
    segment_sec = segment,
    -- The context may not be longer than the segment: a shorter segment shortens the default.
    context_sec = opts.context or math.min(radio.context, segment),
    crossfade_sec = opts.crossfade or radio.crossfade,
    variation = opts.variation or radio.variation,
    ahead = opts.ahead,
    infer_steps = opts.steps or gen.steps,
    scheduler = opts.scheduler or gen.scheduler,
    guidance_scale = opts.guidance_scale or gen.guidance_scale,
    variant = (variant ~= "" and variant ~= "none") and variant or nil,
  },
    nil
end

return M
