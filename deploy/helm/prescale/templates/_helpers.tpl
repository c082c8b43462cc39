{{/*
The chart's name (nameOverride), the app.kubernetes.io/name of the server's objects.
*/}}
{{- define "prescale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of the release's objects: fullnameOverride, else the release name when it already contains the chart's
name (`helm install prescale ...` gives `prescale`), else `<release>-<name>`. At most 52 characters, so that the
longest derived name (`<fullname>-backtest-writer`) stays within 63.
*/}}
{{- define "prescale.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "prescale.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "prescale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels every object carries. The server's objects add `prescale.selectorLabels`, the backtest's
`prescale.backtestSelectorLabels`.
*/}}
{{- define "prescale.commonLabels" -}}
helm.sh/chart: {{ include "prescale.chart" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: prescale
{{- end -}}

{{- define "prescale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prescale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "prescale.labels" -}}
{{ include "prescale.selectorLabels" . }}
{{ include "prescale.commonLabels" . }}
{{- end -}}

{{- define "prescale.backtestSelectorLabels" -}}
app.kubernetes.io/name: {{ include "prescale.name" . }}-backtest
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "prescale.backtestLabels" -}}
{{ include "prescale.backtestSelectorLabels" . }}
{{ include "prescale.commonLabels" . }}
{{- end -}}

{{- define "prescale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "prescale.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the pods run as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "prescale.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The ConfigMap the nightly backtest publishes into and the server reads, as namespace/name. */}}
{{- define "prescale.backtestConfigMap" -}}
{{- printf "%s-backtests" (include "prescale.fullname" .) -}}
{{- end -}}

{{/* The DNS names of the Service: the serving certificate must carry `<service>.<namespace>.svc`. */}}
{{- define "prescale.serviceNames" -}}
{{- $svc := include "prescale.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/* The Secret holding the API's serving certificate (tls.crt, tls.key); empty with tls.mode selfSigned. */}}
{{- define "prescale.tlsSecret" -}}
{{- if eq .Values.tls.mode "certManager" -}}
{{- printf "%s-serving-tls" (include "prescale.fullname" .) -}}
{{- else if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret is required with tls.mode existingSecret: the name of a kubernetes.io/tls Secret in the release namespace" .Values.tls.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Where the Prometheus credentials are mounted. */}}
{{- define "prescale.prometheusMounts" -}}
{{- $p := .Values.prometheus -}}
{{- $mounts := list -}}
{{- if $p.basicAuth.existingSecret -}}
{{- $mounts = append $mounts (dict "name" "prometheus-basic-auth" "secret" $p.basicAuth.existingSecret "key" $p.basicAuth.passwordKey "path" "/var/run/prescale/prometheus-basic-auth") -}}
{{- end -}}
{{- if $p.bearerToken.existingSecret -}}
{{- $mounts = append $mounts (dict "name" "prometheus-bearer-token" "secret" $p.bearerToken.existingSecret "key" $p.bearerToken.key "path" "/var/run/prescale/prometheus-bearer-token") -}}
{{- end -}}
{{- if $p.ca.existingSecret -}}
{{- $mounts = append $mounts (dict "name" "prometheus-ca" "secret" $p.ca.existingSecret "key" $p.ca.key "path" "/var/run/prescale/prometheus-ca") -}}
{{- end -}}
{{- toJson $mounts -}}
{{- end -}}

{{/*
The workload file: `config` as given, with the listen addresses the container ports need and the `prometheus:`
section completed from `prometheus` (URL, credential files). Keys the chart owns are refused in `config`.
*/}}
{{- define "prescale.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if not (get $config "workloads") -}}
{{- if not .Values.watchObjects.enabled -}}
{{- fail "config.workloads: none listed, so prescale has nothing to plan; list at least one workload, or set watchObjects.enabled: true to plan for PredictiveAutoscaler objects only" -}}
{{- end -}}
{{- if .Values.backtest.enabled -}}
{{- fail "backtest.enabled: the nightly backtest replays config.workloads, and none are listed; list one, or set backtest.enabled: false" -}}
{{- end -}}
{{- end -}}
{{- range $key := list "apiAddr" "adminAddr" -}}
{{- if hasKey $config $key -}}
{{- fail (printf "config.%s: the chart sets the listen addresses (the container ports); remove it from config" $key) -}}
{{- end -}}
{{- end -}}
{{- $prom := deepCopy (get $config "prometheus" | default dict) -}}
{{- range $key := list "url" "bearerToken" "bearerTokenFile" "basicAuth" "caFile" -}}
{{- if hasKey $prom $key -}}
{{- fail (printf "config.prometheus.%s: set the Prometheus URL and credentials with the chart's prometheus.* values (prometheus.url, prometheus.basicAuth, prometheus.bearerToken, prometheus.ca), not in config" $key) -}}
{{- end -}}
{{- end -}}
{{- $p := .Values.prometheus -}}
{{- if and $p.basicAuth.existingSecret $p.bearerToken.existingSecret -}}
{{- fail "prometheus.basicAuth.existingSecret and prometheus.bearerToken.existingSecret: set at most one; Prometheus takes one kind of credentials" -}}
{{- end -}}
{{- $_ := set $prom "url" $p.url -}}
{{- if $p.basicAuth.existingSecret -}}
{{- $_ := set $prom "basicAuth" (dict "username" (required "prometheus.basicAuth.username is required with prometheus.basicAuth.existingSecret" $p.basicAuth.username) "passwordFile" (printf "/var/run/prescale/prometheus-basic-auth/%s" $p.basicAuth.passwordKey)) -}}
{{- end -}}
{{- if $p.bearerToken.existingSecret -}}
{{- $_ := set $prom "bearerTokenFile" (printf "/var/run/prescale/prometheus-bearer-token/%s" $p.bearerToken.key) -}}
{{- end -}}
{{- if $p.ca.existingSecret -}}
{{- $_ := set $prom "caFile" (printf "/var/run/prescale/prometheus-ca/%s" $p.ca.key) -}}
{{- end -}}
{{- $rest := omit $config "prometheus" "workloads" -}}
{{- /* The listen addresses first and the workloads last, as deploy/base/config.yaml has them. */ -}}
apiAddr: 0.0.0.0:6443
adminAddr: 0.0.0.0:8080
{{- with $rest }}
{{ toYaml . }}
{{- end }}
prometheus:
  {{- toYaml $prom | nindent 2 }}
{{- if hasKey $config "workloads" }}
workloads:
  {{- toYaml $config.workloads | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pod security context every prescale pod runs with (the `restricted` Pod Security Standard). */}}
{{- define "prescale.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "prescale.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* NetworkPolicy peers. */}}
{{- define "prescale.prometheusPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.networkPolicy.prometheus.namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.prometheus.podLabels | nindent 6 }}
{{- end -}}

{{- define "prescale.apiServerPeers" -}}
{{- $peers := list -}}
{{- range .Values.networkPolicy.apiServerCIDRs -}}
{{- $peers = append $peers (dict "ipBlock" (dict "cidr" .)) -}}
{{- end -}}
{{- toYaml $peers -}}
{{- end -}}

{{/* Egress every prescale pod needs: Prometheus, the Kubernetes API, DNS. */}}
{{- define "prescale.egress" -}}
- to:
    {{- include "prescale.prometheusPeer" . | nindent 4 }}
  ports:
    - port: {{ .Values.networkPolicy.prometheus.port }}
      protocol: TCP
# The Kubernetes API: the `kubernetes` Service (443) is translated to the API servers' own port (often 6443)
# before policy applies on most CNIs, so both are allowed.
- to:
    {{- include "prescale.apiServerPeers" . | nindent 4 }}
  ports:
    - port: 443
      protocol: TCP
    - port: 6443
      protocol: TCP
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

{{/* The controller's leader-election Lease: `prescale-controller` for a release named prescale, the flag's default. */}}
{{- define "prescale.lease" -}}
{{ include "prescale.fullname" . }}-controller
{{- end -}}
