---@meta
-- Type definitions for lofi.nvim (LuaCATS). Nothing here runs.

---@class (exact) lofi.DaemonConfig
---@field cmd? string[] runs `lofi-daemon` ("serve" and the flags are appended; see :h lofi-config)
---@field models_dir? string passed as `--models`
---@field cache_dir? string passed as `--cache-dir`
---@field log_file? string|false passed as `--log-file`; false: the daemon's own default
---@field args string[] extra arguments after the flags above
---@field env? table<string, string> extra environment variables
---@field request_timeout_ms integer
---@field shutdown_timeout_ms integer
---@field backoff_ms integer first restart delay after a crash (doubles per quick crash)
---@field max_backoff_ms integer cap of the restart delay

---@class (exact) lofi.GenerateDefaults
---@field prompt string used by `:Lofi generate` without a prompt
---@field duration number seconds, 5-240
---@field steps integer 1-200
---@field seed? integer fixed seed (nil: random per track)
---@field scheduler? "euler"|"heun"|"pingpong"
---@field guidance_scale? number
---@field format "wav"|"flac"|"ogg"
---@field backend string

---@class (exact) lofi.PlayerConfig
---@field cmd? string[] player command; "{file}" is replaced by the track, else it is appended
---@field autoplay boolean play each finished track
---@field loop boolean repeat the track

---@class (exact) lofi.ProgressConfig
---@field enabled boolean
---@field position "top-right"|"bottom-right"|"top-left"|"bottom-left"
---@field width integer
---@field border string|string[]

---@class (exact) lofi.LogConfig
---@field level "trace"|"debug"|"info"|"warn"|"error"|"off"

---@class (exact) lofi.Config
---@field daemon lofi.DaemonConfig
---@field generate lofi.GenerateDefaults
---@field player lofi.PlayerConfig
---@field progress lofi.ProgressConfig
---@field notify boolean messages when a track is ready or cancelled
---@field log lofi.LogConfig

---@class (exact) lofi.UserConfig
---@field daemon? lofi.DaemonConfig|{}
---@field generate? lofi.GenerateDefaults|{}
---@field player? lofi.PlayerConfig|{}
---@field progress? lofi.ProgressConfig|{}
---@field notify? boolean
---@field log? lofi.LogConfig|{}

---@class (exact) lofi.GenerateOpts
---@field prompt? string
---@field duration? number
---@field seed? integer
---@field steps? integer
---@field scheduler? "euler"|"heun"|"pingpong"
---@field guidance_scale? number
---@field format? "wav"|"flac"|"ogg"
---@field priority? "normal"|"high"
---@field backend? string
---@field play? boolean play when ready (overrides player.autoplay)

---@class lofi.Track
---@field track_id? string
---@field path string
---@field prompt? string
---@field duration_sec? number
---@field sample_rate? integer
---@field channels? integer
---@field format? string
---@field seed? integer
---@field generation_time_sec? number
---@field model_version? string
---@field cached? boolean
---@field created_at? number
---@field last_used_at? number
---@field size_bytes? integer

---@class lofi.Error
---@field code integer
---@field name string
---@field message string
---@field remedy? string
---@field data? table
---@field track_id? string

---@class lofi.Backend
---@field name string
---@field status "ready"|"not_installed"|"error"
---@field message string
---@field min_duration_sec number
---@field max_duration_sec number
---@field sample_rate integer
---@field model_version? string
---@field providers string[]

---@class lofi.GenerationInfo
---@field track_id? string nil until the daemon accepted the request
---@field prompt string
---@field status "requesting"|"queued"|"running"
---@field percent number
---@field phase? string
---@field step? integer
---@field total_steps? integer
---@field eta_sec? number

---@alias lofi.EventName
---| "generation_start"
---| "generation_progress"
---| "generation_complete"
---| "generation_error"
---| "generation_cancelled"
---| "daemon_exit"
---| "setup_progress"
---| "setup_complete"
---| "setup_error"
---| "setup_cancelled"
