--- The parameters of one `generate` request: `generate()` options checked against the option
--- schema (`lofi.config`), unset ones taken from the `generate` defaults, text checked before
--- anything is sent (the daemon reads UTF-8 JSON, so bytes that are not UTF-8 would never
--- reach it as a request).
local config = require("lofi.config")
local errors = require("lofi.errors")
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
}

--- Check generate() options and turn them into daemon parameters.
---@param opts lofi.GenerateOpts|string
---@return table? params
---@return lofi.Error? err INVALID_OPTION naming the option, or INVALID_PROMPT
function M.build(opts)
  if type(opts) == "string" then
    opts = { prompt = opts }
  end
  if type(opts) ~= "table" then
    return nil,
      errors.new(
        errors.client.INVALID_OPTION,
        "generate() takes a prompt or a table of options, got " .. type(opts)
      )
  end
  local problem = config.check_generate(opts)
  if problem then
    return nil, errors.new(errors.client.INVALID_OPTION, problem)
  end
  local defaults = config.get().generate
  local params = {}
  for name, key in pairs(param_names) do
    local value = opts[name]
    if value == nil then
      value = defaults[name]
    end
    params[key] = value
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
    return nil, errors.new(errors.client.INVALID_OPTION, "`prompt` must not be empty")
  end
  for name, key in pairs(param_names) do
    if type(params[key]) == "string" and not text.is_utf8(params[key]) then
      return nil, errors.new(errors.client.INVALID_OPTION, "`" .. name .. "` is not valid UTF-8")
    end
  end
  return params, nil
end

return M
