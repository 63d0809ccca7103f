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
