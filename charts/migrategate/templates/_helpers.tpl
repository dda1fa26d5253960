{{/* The chart's name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "migrategate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Every object's name: fullnameOverride, else <release>-<name> (just <release> when it
already holds the name).
*/}}
{{- define "migrategate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "migrategate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "migrategate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "migrategate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "migrategate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "migrategate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "migrategate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "migrategate.labels" -}}
{{ include "migrategate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
RBAC rules. Keep them in step with deploy/rbac.yaml (a test compares the two).
There is no rule for Secrets on purpose: only the migration Job's pod reads the
database URL, through secretKeyRef.
*/}}
{{- define "migrategate.namespacedRules" -}}
# The DatabaseMigrations it reconciles; patch: kopf keeps its progress in annotations.
- apiGroups: ["migrategate.io"]
  resources: ["databasemigrations"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["migrategate.io"]
  resources: ["databasemigrations/status"]
  verbs: ["get", "patch"]
# One Job per migration content; finished ones beyond historyLimit are deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Migration pods: their termination message and waiting reasons. Application pods:
# patch lifts the rollout gate (removes one spec.schedulingGates entry).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
# spec.gate.deployments: the rollout the contract phase waits for (read only).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
# Events on DatabaseMigrations at each transition.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{- define "migrategate.clusterRules" -}}
# kopf discovers served resources, so it notices the CRD being (re)installed.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# kopf lists namespaces to resolve the ones it serves (read-only).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- if gt (int .Values.replicas) 1 }}
# Peering between replicas: only one of them handles events.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings", "clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end -}}
