{{/* Names and labels. */}}
{{- define "ibstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ibstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ibstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ibstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ibstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ibstream.labels" -}}
helm.sh/chart: {{ include "ibstream.chart" . }}
{{ include "ibstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ibstream
{{- end -}}

{{- define "ibstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ibstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ibstream.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The deployables, in a fixed order: `ibstream run <name>`. */}}
{{- define "ibstream.deployableNames" -}}
producer streams execution sink api agent0
{{- end -}}

{{/* Embedded chDB (no ClickHouse server): the API runs the sink in-process and there is no sink Deployment. */}}
{{- define "ibstream.embeddedWarehouse" -}}
{{- if not .Values.clickhouse.url -}}true{{- end -}}
{{- end -}}

{{/* Whether deployable `name` is rendered. Call with (dict "root" $ "name" $name). */}}
{{- define "ibstream.rendered" -}}
{{- $values := index .root.Values .name -}}
{{- if and $values.enabled (not (and (eq .name "sink") (include "ibstream.embeddedWarehouse" .root))) -}}true{{- end -}}
{{- end -}}

{{/*
Whether deployable `name` runs as a StatefulSet: execution always (the one order-placing executor and its journal),
any other deployable when it keeps state on a volume (persistence.enabled, e.g. Agent0's plans). Call with
(dict "root" $ "name" $name).
*/}}
{{- define "ibstream.statefulSet" -}}
{{- $values := index .root.Values .name -}}
{{- if or (eq .name "execution") $values.persistence.enabled -}}true{{- end -}}
{{- end -}}

{{/*
Non-secret settings shared by every deployable and the topics job, as a YAML map (the ConfigMap's data). The
structured values come first; `config` may add to or override them.
*/}}
{{- define "ibstream.configData" -}}
{{- $data := dict
  "IBSTREAM_STATE_DIR" .Values.stateDir
  "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS" .Values.kafka.bootstrapServers
  "IBSTREAM_KAFKA_TOPIC_REPLICATION" (toString .Values.kafka.topicReplication)
  "IBSTREAM_IB_HOST" .Values.ib.host
  "IBSTREAM_IB_PORT" (toString .Values.ib.port)
  "IBSTREAM_WAREHOUSE_DATABASE" .Values.clickhouse.database
-}}
{{- if .Values.kafka.topicPrefix }}{{ $_ := set $data "IBSTREAM_KAFKA_TOPIC_PREFIX" .Values.kafka.topicPrefix }}{{ end -}}
{{- with .Values.kafka.securityProtocol }}{{ if ne . "PLAINTEXT" }}{{ $_ := set $data "IBSTREAM_KAFKA_SECURITY_PROTOCOL" . }}{{ end }}{{ end -}}
{{- with .Values.kafka.sslCaLocation }}{{ $_ := set $data "IBSTREAM_KAFKA_SSL_CA_LOCATION" . }}{{ end -}}
{{- if .Values.schemaRegistry.url }}{{ $_ := set $data "IBSTREAM_SCHEMA_REGISTRY_URL" .Values.schemaRegistry.url }}{{ end -}}
{{- if .Values.clickhouse.url }}{{ $_ := set $data "IBSTREAM_CLICKHOUSE_URL" .Values.clickhouse.url }}{{ end -}}
{{- if .Values.agent0.enabled -}}
{{- $_ := set $data "IBSTREAM_AGENT0_URL" (printf "http://%s-agent0:%d" (include "ibstream.fullname" .) (int .Values.agent0.port)) -}}
{{- $_ := set $data "IBSTREAM_AGENT0_API_URL" (printf "http://%s-api:%d" (include "ibstream.fullname" .) (int .Values.api.port)) -}}
{{- end -}}
{{- range $key, $value := .Values.config -}}
{{- $_ := set $data $key (toString $value) -}}
{{- end -}}
{{- if .Values.ibGateway.enabled -}}
{{- include "ibstream.ibGateway.check" . -}}
{{- /* The chart's gateway wins over ib.host/ib.port; `config` may not redirect the deployables elsewhere. */ -}}
{{- range $key := list "IBSTREAM_IB_HOST" "IBSTREAM_IB_PORT" "IBSTREAM_IB_DAILY_RESTART_TIME" "IBSTREAM_IB_DAILY_RESTART_TIMEZONE" -}}
{{- if hasKey $.Values.config $key -}}
{{- fail (printf "config.%s conflicts with ibGateway.enabled: the chart sets it from ibGateway (remove it from config)" $key) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $data "IBSTREAM_IB_HOST" (include "ibstream.ibGateway.name" .) -}}
{{- $_ := set $data "IBSTREAM_IB_PORT" (include "ibstream.ibGateway.apiPort" .) -}}
{{- $_ := set $data "IBSTREAM_IB_DAILY_RESTART_TIME" .Values.ibGateway.dailyRestart.time -}}
{{- $_ := set $data "IBSTREAM_IB_DAILY_RESTART_TIMEZONE" .Values.ibGateway.dailyRestart.timeZone -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
Secret references → environment variables, and which deployables get each ("job" is the topics hook Job).
Agent0 gets only the token verification key: it talks to neither Kafka, the registry nor ClickHouse.
*/}}
{{- define "ibstream.secretEnvTable" -}}
kafkaClientConfig: {env: IBSTREAM_KAFKA_CLIENT_CONFIG, to: [producer, streams, execution, sink, api, job]}
schemaRegistryUsername: {env: IBSTREAM_SCHEMA_REGISTRY_USERNAME, to: [producer, streams, execution, sink, api]}
schemaRegistryPassword: {env: IBSTREAM_SCHEMA_REGISTRY_PASSWORD, to: [producer, streams, execution, sink, api]}
clickhouseUsername: {env: IBSTREAM_CLICKHOUSE_USERNAME, to: [sink, api]}
clickhousePassword: {env: IBSTREAM_CLICKHOUSE_PASSWORD, to: [sink, api]}
apiJwtSecret: {env: IBSTREAM_API_JWT_SECRET, to: [api, agent0]}
apiJwtPublicKey: {env: IBSTREAM_API_JWT_PUBLIC_KEY, to: [api, agent0]}
executionAccount: {env: IBSTREAM_EXECUTION_ACCOUNT, to: [execution]}
ibLiveAccount: {env: IBSTREAM_IB_LIVE_ACCOUNT, to: [producer, execution]}
agent0Token: {env: IBSTREAM_AGENT0_TOKEN, to: [streams]}
{{- end -}}

{{/* env entries (secretKeyRef) for `who` (a deployable name or "job"). Call with (dict "root" $ "who" $name). */}}
{{- define "ibstream.secretEnv" -}}
{{- $out := list -}}
{{- $root := .root -}}
{{- $who := .who -}}
{{- $table := include "ibstream.secretEnvTable" $root | fromYaml -}}
{{- range $ref, $spec := $table -}}
{{- $secret := index $root.Values.secrets $ref -}}
{{- if and $secret.name (has $who $spec.to) -}}
{{- $out = append $out (dict "name" $spec.env "valueFrom" (dict "secretKeyRef" (dict "name" $secret.name "key" $secret.key))) -}}
{{- end -}}
{{- end -}}
{{- if hasKey $root.Values.kafkaIdentities $who -}}
{{- $out = concat $out (include "ibstream.kafkaIdentityEnv" (dict "root" $root "who" $who) | fromYamlArray) -}}
{{- end -}}
{{- if $out }}{{ toYaml $out }}{{ end -}}
{{- end -}}

{{/*
`who`'s own Kafka principal (kafkaIdentities.<who>) as env entries; with kafka.securityProtocol SASL_* a deployable
without one fails the render, naming the value to set (it would otherwise run as nobody, or as someone else).
*/}}
{{- define "ibstream.kafkaIdentityEnv" -}}
{{- $root := .root -}}
{{- $identity := index $root.Values.kafkaIdentities .who -}}
{{- $out := list -}}
{{- if $identity.secretName -}}
{{- $ref := dict "name" $identity.secretName -}}
{{- $out = append $out (dict "name" "IBSTREAM_KAFKA_SASL_USERNAME" "valueFrom" (dict "secretKeyRef" (merge (dict "key" $identity.usernameKey) $ref))) -}}
{{- $out = append $out (dict "name" "IBSTREAM_KAFKA_SASL_PASSWORD" "valueFrom" (dict "secretKeyRef" (merge (dict "key" $identity.passwordKey) $ref))) -}}
{{- $out = append $out (dict "name" "IBSTREAM_KAFKA_SASL_MECHANISM" "valueFrom" (dict "secretKeyRef" (merge (dict "key" $identity.mechanismKey "optional" true) $ref))) -}}
{{- else if hasPrefix "SASL_" $root.Values.kafka.securityProtocol -}}
{{- fail (printf "kafkaIdentities.%s.secretName is required with kafka.securityProtocol %s: every deployable logs in as its own principal" .who $root.Values.kafka.securityProtocol) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Pod-level security context: non-root, fixed ids, RuntimeDefault seccomp. */}}
{{- define "ibstream.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: not configurable on purpose. */}}
{{- define "ibstream.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Whether deployable `name` talks to Kafka (all but Agent0, which gets no Kafka secret or mount). */}}
{{- define "ibstream.usesKafka" -}}
{{- if ne . "agent0" -}}true{{- end -}}
{{- end -}}

{{/* Kafka TLS volume (when kafka.tlsSecretName is set). */}}
{{- define "ibstream.kafkaTlsVolume" -}}
{{- if .Values.kafka.tlsSecretName -}}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tlsSecretName | quote }}
    defaultMode: 0440
{{- end -}}
{{- end -}}

{{- define "ibstream.kafkaTlsMount" -}}
{{- if .Values.kafka.tlsSecretName -}}
- name: kafka-tls
  mountPath: {{ .Values.kafka.tlsMountPath }}
  readOnly: true
{{- end -}}
{{- end -}}


{{/* ---- IB Gateway (ibGateway.enabled): names, ports, and the checks the schema also makes. ---- */}}
{{- define "ibstream.ibGateway.name" -}}
{{- printf "%s-ib-gateway" (include "ibstream.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The gateway's standard API port, which the Service exposes and the deployables dial (and judge live or paper). */}}
{{- define "ibstream.ibGateway.apiPort" -}}
{{- if eq .Values.ibGateway.tradingMode "live" -}}4001{{- else -}}4002{{- end -}}
{{- end -}}

{{/* The image's socat relay of that port to the pod network (the gateway itself only accepts 127.0.0.1). */}}
{{- define "ibstream.ibGateway.containerPort" -}}
{{- if eq .Values.ibGateway.tradingMode "live" -}}4003{{- else -}}4004{{- end -}}
{{- end -}}

{{- define "ibstream.ibGateway.image" -}}
{{- $image := .Values.ibGateway.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $image.tag -}}
{{- end -}}
{{- end -}}

{{/* dailyRestart.time "HH:MM" (24 h) as IBC's AutoRestartTime wants it: "hh:mm AM|PM". */}}
{{- define "ibstream.ibGateway.autoRestartTime" -}}
{{- $parts := splitList ":" .Values.ibGateway.dailyRestart.time -}}
{{- $hour := index $parts 0 | atoi -}}
{{- $hour12 := mod $hour 12 -}}
{{- if eq $hour12 0 }}{{ $hour12 = 12 }}{{ end -}}
{{- printf "%02d:%s %s" $hour12 (index $parts 1) (ternary "AM" "PM" (lt $hour 12)) -}}
{{- end -}}

{{/*
Fails the render on a gateway configuration that must not run, with the value to fix. The schema says the same, but
it can be skipped (--skip-schema-validation); these checks cannot.
*/}}
{{- define "ibstream.ibGateway.check" -}}
{{- $gw := .Values.ibGateway -}}
{{- if not $gw.credentials.secretName -}}
{{- fail "ibGateway.credentials.secretName is required with ibGateway.enabled: the IBKR login comes only from a Secret you create (README.md, IB Gateway in the chart)" -}}
{{- end -}}
{{- if not (has $gw.tradingMode (list "paper" "live")) -}}
{{- fail (printf "ibGateway.tradingMode must be paper or live, not %q" (toString $gw.tradingMode)) -}}
{{- end -}}
{{- if eq $gw.tradingMode "live" -}}
{{- if not $gw.allowLive -}}
{{- fail "ibGateway.tradingMode live needs ibGateway.allowLive: true (paper is the default; live trading is an explicit decision)" -}}
{{- end -}}
{{- if not .Values.secrets.ibLiveAccount.name -}}
{{- fail "ibGateway.tradingMode live needs secrets.ibLiveAccount (IBSTREAM_IB_LIVE_ACCOUNT, the live interlock naming the live account)" -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^([01][0-9]|2[0-3]):[0-5][0-9]$" (toString $gw.dailyRestart.time)) -}}
{{- fail (printf "ibGateway.dailyRestart.time must be a time of day HH:MM (24 h, e.g. \"23:45\"), not %q" (toString $gw.dailyRestart.time)) -}}
{{- end -}}
{{- range $key := list "TWS_USERID" "TWS_PASSWORD" "TWS_PASSWORD_FILE" "TRADING_MODE" "READ_ONLY_API" "AUTO_RESTART_TIME" "TWOFA_TIMEOUT_ACTION" "RELOGIN_AFTER_TWOFA_TIMEOUT" "TIME_ZONE" "TZ" -}}
{{- if hasKey $gw.env $key -}}
{{- fail (printf "ibGateway.env.%s is set by the chart from ibGateway's own values (credentials, tradingMode, dailyRestart, twoFactorTimeoutAction): remove it" $key) -}}
{{- end -}}
{{- end -}}
{{- if not $gw.dailyRestart.timeZone -}}
{{- fail "ibGateway.dailyRestart.timeZone is required (an IANA zone, e.g. America/New_York)" -}}
{{- end -}}
{{- end -}}
