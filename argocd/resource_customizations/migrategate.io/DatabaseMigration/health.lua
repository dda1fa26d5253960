-- Argo CD health check for migrategate.io/DatabaseMigration.
-- Argo CD runs it with the live object as the global `obj` and reads the
-- returned table's `status` and `message`. Lua 5.1 (gopher-lua): no goto,
-- no integer division, no bitwise operators. Custom health scripts get only the
-- base, table and package libraries (no string or math), unless useOpenLibs.
-- Install it as described in argocd/README.md; this file is the only copy. Its
-- tests, in argo-cd's own format: health_test.yaml and testdata/ beside it.

local function findCondition(conditions, conditionType)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if type(condition) == "table" and condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function isTrue(condition)
  return condition ~= nil and condition.status == "True"
end

local function textOf(condition, fallback)
  if condition ~= nil then
    if type(condition.message) == "string" and condition.message ~= "" then
      return condition.message
    end
    if type(condition.reason) == "string" and condition.reason ~= "" then
      return condition.reason
    end
  end
  return fallback
end

local function health(object)
  local hs = {}
  local metadata = object.metadata or {}
  local generation = metadata.generation
  local status = object.status

  if type(status) ~= "table" or next(status) == nil then
    hs.status = "Progressing"
    hs.message = "Waiting for the migrategate operator to report status"
    return hs
  end

  -- Whether a reported observedGeneration is for the current spec. As in kstatus,
  -- an absent one (or an absent metadata.generation) does not hold the verdict back.
  local function isCurrent(observedGeneration)
    return generation == nil or observedGeneration == nil or observedGeneration >= generation
  end

  if not isCurrent(status.observedGeneration) then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
      .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
    return hs
  end

  local conditions = status.conditions
  -- Reconciling (a Job runs, a retry is due, or the contract phase waits for the rollout)
  -- wins over Stalled, whatever its generation; Stalled counts for the current one only.
  local verdicts = {
    { type = "Reconciling", health = "Progressing", fallback = "Migration in progress" },
    { type = "Stalled", health = "Degraded", fallback = "Migration failed", current = true },
  }
  for _, verdict in ipairs(verdicts) do
    local condition = findCondition(conditions, verdict.type)
    if isTrue(condition) and (not verdict.current or isCurrent(condition.observedGeneration)) then
      hs.status = verdict.health
      hs.message = textOf(condition, verdict.fallback)
      return hs
    end
  end

  local ready = findCondition(conditions, "Ready")
  if isTrue(ready) and isCurrent(ready.observedGeneration) then
    hs.status = "Healthy"
    if type(status.migratedImage) == "string" and status.migratedImage ~= "" then
      hs.message = textOf(ready, "Migrated " .. status.migratedImage)
    else
      hs.message = textOf(ready, "Migrated")
    end
    return hs
  end

  local suspended = type(object.spec) == "table" and object.spec.suspend == true
  if suspended and not isTrue(ready) then
    hs.status = "Suspended"
    hs.message = "spec.suspend is true: no new migration Job starts"
    return hs
  end

  -- spec.approval: a plan waits for migrategate.io/approve=<planHash>; spec.contract.policy
  -- Manual: the contract phase waits for migrategate.io/contract=<contentHash> (a person's move).
  if status.phase == "AwaitingApproval" and not isTrue(ready) then
    hs.status = "Suspended"
    hs.message = textOf(ready, "Waiting for approval of the migration's plan")
    return hs
  end

  hs.status = "Progressing"
  if isTrue(ready) then
    hs.message = "Ready is for generation " .. tostring(ready.observedGeneration)
      .. ", waiting for generation " .. tostring(generation)
  elseif ready ~= nil then
    hs.message = textOf(ready, "Waiting for Ready")
  elseif type(status.message) == "string" and status.message ~= "" then
    hs.message = status.message
  else
    hs.message = "Waiting for the Ready condition"
  end
  return hs
end

return health(obj)
