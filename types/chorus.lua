---@meta
-- Type annotations of the Chorus scripting API v1, for LuaLS / EmmyLua
-- (the repository's .luarc.json points an editor here): completion and
-- checks for strategies, agents and aggregation rules. Nothing here runs;
-- the reference is docs/scripting.md.

---@class chorus.Step                 a step of a config (or started at run time)
---@field id string
---@field name string
---@field agent string
---@field params table
---@field timeout_ms integer
---@field retry {max_attempts: integer, backoff_ms: integer, max_backoff_ms?: integer, jitter?: boolean|number}
---@field dependencies string[]
---@field output_key? string
---@field on_failure "abort"|"continue"|"fallback"
---@field is_fallback boolean
---@field fallback_for? string
---@field consensus_group? string
---@field weight number
---@field approval boolean
---@field when? string
---@field map? string
---@field cache? {ttl_s: integer}
---@field input? table              a run-time step's own input (ctx:run_step{...})

---@class chorus.StepRecord           what ctx:step(id) tells of a step's run
---@field id string
---@field status "pending"|"running"|"paused"|"completed"|"failed"|"skipped"|"cancelled"
---@field output any
---@field error? string
---@field reason? string             why it was skipped
---@field attempts integer
---@field tokens number
---@field cost number
---@field latency_ms? number
---@field agent string
---@field agent_version? string
---@field answered_by? string

---@class chorus.Task                  a child task (a coroutine run by the scheduler)
local Task = {}
---Waits until the task is done.
---@return boolean|nil ok     true, then the body's results; nil, err when it failed or this wait was cancelled
---@return any ...
function Task:join() end
---Cancels the task and its children: its waits return nil, "cancelled".
function Task:cancel() end
---@return boolean
function Task:done() end

---@class chorus.Graph
---@field roots chorus.Step[]
---@field indegree table<chorus.Step, integer>
---@field dependents table<string, chorus.Step[]>

---@class chorus.Ctx                   what a strategy's run receives
---@field steps chorus.Step[]          the config's steps that are not fallbacks
---@field settings table               the config's settings (with the strategy's own)
---@field config string                the config's name
---@field execution_id string
---@field trace_id string
local Ctx = {}
---Runs a step with every framework semantics (timeout, retries, fallbacks,
---persistence, events). A table that is not one of ctx.steps is a step
---started now: {id, agent, params, input, ...}, checked and recorded.
---@param step chorus.Step|table
---@param overrides? {on_failure?: "abort"|"continue"|"fallback", try_fallbacks?: boolean, input?: table}
---@return boolean ok
---@return any output_or_err
function Ctx:run_step(step, overrides) end
---run_step in a child task.
---@param step chorus.Step|table
---@param overrides? table
---@return chorus.Task
function Ctx:spawn_step(step, overrides) end
---A child task running fn(...) (script code: the CPU budget applies).
---@param fn function
---@return chorus.Task
function Ctx:spawn(fn, ...) end
---wait(tasks): all; wait(tasks, {any = true}): the index of the first done;
---wait(fns, {limit = n}): runs the functions n at a time, returns their tasks.
---@param tasks chorus.Task[]|function[]
---@param opts? {any?: boolean, limit?: integer}
---@return any
function Ctx:wait(tasks, opts) end
---@param id string
---@return chorus.StepRecord|nil
function Ctx:step(id) end
---The output dependents see (a fallback's answer for its step).
---@param id string
---@return any
function Ctx:output(id) end
---@param steps? chorus.Step[]
---@return chorus.Graph
function Ctx:graph(steps) end
---Dependency order; declaration order among ready steps.
---@param steps? chorus.Step[]
---@return chorus.Step[]
function Ctx:ordered(steps) end
---@param results {step_id: string, ok: boolean, output?: any, error?: string, weight?: number}[]
---@param rule? string
---@param opts? table
---@return any output
---@return {agreed: integer, total: integer, score: number}|string info_or_err
function Ctx:aggregate(results, rule, opts) end
---@param group string
---@param output any
---@param info table
function Ctx:record_consensus(group, output, info) end
---@param step_id string
function Ctx:answered_by(step_id) end
---@param level "debug"|"info"|"warn"|"error"
---@param fmt string
function Ctx:log(level, fmt, ...) end

---@class chorus.AgentCtx              what an agent's call receives
---@field step_id string
---@field params table
---@field config string
---@field settings table               the config's settings (read only)
---@field execution_id string
---@field trace_id string
---@field attempt integer
local AgentCtx = {}
---A piece of a streamed answer (step.delta events to subscribers).
---@param text string
function AgentCtx:delta(text) end
---What the attempt has used so far (checked against the execution's budget).
---@param usage {tokens?: number, cost?: number}
function AgentCtx:usage(usage) end
---The W3C traceparent header value for an outbound request of this attempt.
---@return string
function AgentCtx:traceparent() end
---Runs another agent within this attempt (its schema checked, same deadline and cancel).
---@param agent string
---@param params table
---@param input? table
---@return any output_or_nil
---@return table|string|nil meta_or_err
---@return table? info
function AgentCtx:call(agent, params, input) end

---@class chorus.Strategy
---@field name string
---@field version? string
---@field description? string
---@field schema? {fields: table}      extra settings it reads
---@field run fun(ctx: chorus.Ctx, steps: chorus.Step[], settings: table): any, string?

---@class chorus.Agent
---@field name string
---@field version? string
---@field description? string
---@field schema? {fields: table}      its params
---@field rate_limit? {per_second: number, burst?: integer}
---@field call fun(input: table, ctx: chorus.AgentCtx, step: chorus.Step): any, table|string?, table?
---@field check_step? fun(step: chorus.Step, cfg: {steps_by_id: table, settings: table}): {path: string, message: string}[]?

---@class chorus.Rule
---@field name string
---@field version? string
---@field schema? {fields: table}      its aggregator_options
---@field aggregate fun(results: table[], opts: table): any, {agreed: integer, total: integer, score: number}|string

---@class chorus.sched
---@field sleep fun(ms: number): boolean|nil, string?   true, or nil, "cancelled"|"timeout"
---@field now fun(): number            monotonic milliseconds
---@field time fun(): number           wall-clock seconds

---@class chorus.json
---@field null lightuserdata
---@field decode fun(s: string): any, string?
---@field encode fun(v: any): string|nil, string?
---@field canonical fun(v: any): string|nil, string?
---@field array fun(t?: table): table

---@class chorus.http.Response
---@field status integer
---@field headers table<string, string>
---@field body string
---@field json? any

---@class chorus.http
---@field request fun(opts: {method?: string, url: string, headers?: table, body?: string, timeout_ms?: number, max_body_bytes?: integer}): chorus.http.Response|nil, string?, string?
---@field get fun(url: string, opts?: table): chorus.http.Response|nil, string?, string?
---@field post_json fun(url: string, value: any, opts?: table): chorus.http.Response|nil, string?, string?
---@field open fun(opts: table): table|nil, string?, string?

---@class chorus.template
---@field render fun(text: string, input: table, what?: string): string|nil, string?
---@field render_value fun(v: any, input: table, what?: string): any, string?
---@field lookup fun(value: table, path: string): any, string?
