{{/* Chart name, overridable. */}}
{{- define "pushd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; object names append -grpc, -ws, -redis, so keep room for them. */}}
{{- define "pushd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 57 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 57 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pushd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pushd.labels" -}}
helm.sh/chart: {{ include "pushd.chart" . }}
app.kubernetes.io/name: {{ include "pushd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selects the pushd pods only (the bundled Redis pods share name and instance). */}}
{{- define "pushd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "pushd.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pushd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "pushd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pushd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when pushd gets a Redis from any of the three sources. */}}
{{- define "pushd.hasRedis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret.name .Values.redis.bundled.enabled }}true{{ end }}
{{- end }}

{{/*
redisCluster with its keys filled in: values kept by `helm upgrade --reuse-values` from a chart
older than redisCluster have no such key.
*/}}
{{- define "pushd.redisCluster" -}}
{{- $c := .Values.redisCluster | default dict }}
{{- dict "seeds" ($c.seeds | default "") "existingSecret" (merge (dict) ($c.existingSecret | default dict) (dict "name" "" "key" "seeds")) | toJson }}
{{- end }}

{{/*
redisAuth with its keys filled in: values kept by `helm upgrade --reuse-values` from a chart
older than redisAuth have no such key.
*/}}
{{- define "pushd.redisAuth" -}}
{{- $a := .Values.redisAuth | default dict }}
{{- dict "passwordSecret" (merge (dict) ($a.passwordSecret | default dict) (dict "name" "" "key" "password")) "user" ($a.user | default "") | toJson }}
{{- end }}

{{/* "true" when pushd gets the seeds of a Redis Cluster. */}}
{{- define "pushd.hasRedisCluster" -}}
{{- $c := include "pushd.redisCluster" . | fromJson }}
{{- if or $c.seeds $c.existingSecret.name }}true{{ end }}
{{- end }}

{{- define "pushd.terminationGracePeriodSeconds" -}}
{{- add (int .Values.pushd.preStopSleepSeconds) (int .Values.pushd.drainTimeoutSeconds) 10 }}
{{- end }}

{{/*
A flag value as pushd expects it: YAML numbers arrive as float64, which would print as 1e+06.
*/}}
{{- define "pushd.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* Refuses values that would deploy something broken; included by the Deployment. */}}
{{- define "pushd.validate" -}}
{{- $redisSources := 0 }}
{{- range list .Values.redis.url .Values.redis.existingSecret.name .Values.redis.bundled.enabled }}
{{- if . }}{{ $redisSources = add1 $redisSources }}{{ end }}
{{- end }}
{{- if gt $redisSources 1 }}
{{- fail "pushd: set only one of redis.url, redis.existingSecret.name and redis.bundled.enabled" }}
{{- end }}
{{- $cluster := include "pushd.redisCluster" . | fromJson }}
{{- if and $cluster.seeds $cluster.existingSecret.name }}
{{- fail "pushd: set only one of redisCluster.seeds and redisCluster.existingSecret.name" }}
{{- end }}
{{- $shared := or (include "pushd.hasRedis" .) (include "pushd.hasRedisCluster" .) }}
{{- if and (include "pushd.hasRedis" .) (include "pushd.hasRedisCluster" .) }}
{{- fail "pushd: set either one Redis (redis.url, redis.existingSecret.name or redis.bundled.enabled) or a Redis Cluster (redisCluster.seeds or redisCluster.existingSecret.name), not both: pushd takes --redis or --redis_cluster" }}
{{- end }}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not $shared) }}
{{- fail "pushd: more than one replica (replicaCount > 1 or autoscaling.enabled) needs Redis, or each replica would see only the pushes that reached it: set redis.url, redis.existingSecret.name or redis.bundled.enabled=true, or a Redis Cluster with redisCluster.seeds or redisCluster.existingSecret.name" }}
{{- end }}
{{- $auth := include "pushd.redisAuth" . | fromJson }}
{{- if or $auth.passwordSecret.name $auth.user }}
{{- if not $shared }}
{{- fail "pushd: redisAuth needs Redis (redis.url or redis.existingSecret.name) or a Redis Cluster (redisCluster.seeds or redisCluster.existingSecret.name): the in-memory store has no password" }}
{{- end }}
{{- if .Values.redis.bundled.enabled }}
{{- fail "pushd: redisAuth cannot be used with redis.bundled.enabled: the bundled Redis has no password and refuses AUTH, so pushd would never be ready; leave redisAuth empty, or use redis.url, redis.existingSecret.name or redisCluster" }}
{{- end }}
{{- if not $auth.passwordSecret.name }}
{{- fail "pushd: redisAuth.user needs redisAuth.passwordSecret.name: pushd takes --redis_user only with --redis_password_file, the password of that user" }}
{{- end }}
{{- end }}
{{- if gt (int .Values.redis.waitReplicas) 0 }}
{{- if not $shared }}
{{- fail "pushd: redis.waitReplicas needs Redis (redis.url or redis.existingSecret.name) or a Redis Cluster (redisCluster.seeds or redisCluster.existingSecret.name): the in-memory store has no replicas" }}
{{- end }}
{{- if .Values.redis.bundled.enabled }}
{{- fail "pushd: redis.waitReplicas needs replicas and the bundled Redis has none, so every push would fail: set it to 0, or use redis.url, redis.existingSecret.name or redisCluster" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "pushd: autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if eq .Values.pushd.auth "jwt" }}
{{- $keys := 0 }}
{{- if .Values.pushd.jwt.hs256.secretName }}{{ $keys = add1 $keys }}{{ end }}
{{- if or .Values.pushd.jwt.rs256.configMapName .Values.pushd.jwt.rs256.secretName }}{{ $keys = add1 $keys }}{{ end }}
{{- if eq $keys 0 }}
{{- fail "pushd: auth=jwt needs a verification key: set pushd.jwt.hs256.secretName or pushd.jwt.rs256.configMapName (or .secretName)" }}
{{- end }}
{{- end }}
{{- if and .Values.pushd.jwt.rs256.configMapName .Values.pushd.jwt.rs256.secretName }}
{{- fail "pushd: set only one of pushd.jwt.rs256.configMapName and pushd.jwt.rs256.secretName" }}
{{- end }}
{{- range $name, $_ := .Values.pushd.flags }}
{{- if has $name (list "grpc_listen" "ws_listen" "role" "redis" "redis_cluster" "redis_wait_replicas" "redis_password_file" "redis_user" "node_id" "auth" "jwt_hs256_secret_file" "jwt_rs256_public_key_file" "allowed_origins" "api_key_file" "tls_cert_file" "tls_key_file" "drain_timeout" "flagfile") }}
{{- fail (printf "pushd: pushd.flags.%s is set by the chart; use the matching value under pushd, redis, redisCluster or redisAuth instead" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.service.grpc.headless (ne .Values.service.grpc.type "ClusterIP") }}
{{- fail "pushd: service.grpc.headless needs service.grpc.type=ClusterIP" }}
{{- end }}
{{- end }}
