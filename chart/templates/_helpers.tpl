{{/*
Expand the name of the chart.
*/}}
{{- define "pod-labeler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec):
the Service is named after it, and a Service name is a DNS label (at most 63 characters).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "pod-labeler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "pod-labeler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "pod-labeler.labels" -}}
helm.sh/chart: {{ include "pod-labeler.chart" . }}
{{ include "pod-labeler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ include "pod-labeler.mode" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The API that `mode: policy` needs, as helm's Capabilities name it (group/version/Kind).
*/}}
{{- define "pod-labeler.policyAPI" -}}
admissionregistration.k8s.io/v1/MutatingAdmissionPolicy
{{- end }}

{{/*
The mode the release runs in, `webhook` or `policy`: every template asks this helper and
nothing else. `auto` is `policy` where the API server serves the policy API (Kubernetes 1.36
and later; `helm install` asks the cluster, `helm template` knows only --api-versions) and
`webhook` elsewhere. `policy` where the API is missing fails, rather than install nothing.
*/}}
{{- define "pod-labeler.mode" -}}
{{- $served := .Capabilities.APIVersions.Has (include "pod-labeler.policyAPI" .) }}
{{- if eq .Values.mode "policy" }}
{{- if not $served }}
{{- fail (printf "mode: policy needs the %s API (Kubernetes 1.36 or later), and this cluster does not serve it: set mode: webhook (or mode: auto, which picks the webhook here). With helm template, pass --api-versions %s if the target cluster serves it." (include "pod-labeler.policyAPI" .) (include "pod-labeler.policyAPI" .)) }}
{{- end }}
{{- "policy" }}
{{- else if eq .Values.mode "auto" }}
{{- ternary "policy" "webhook" $served }}
{{- else }}
{{- "webhook" }}
{{- end }}
{{- end }}

{{/*
Selector labels: only name and instance, as they can never change on a Deployment.
*/}}
{{- define "pod-labeler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pod-labeler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "pod-labeler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pod-labeler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The serving Certificate, and the Secret cert-manager writes it to (mounted by the Deployment).
*/}}
{{- define "pod-labeler.servingCertificateName" -}}
{{- printf "%s-tls" (include "pod-labeler.fullname" .) }}
{{- end }}

{{- define "pod-labeler.servingSecretName" -}}
{{- include "pod-labeler.servingCertificateName" . }}
{{- end }}

{{/*
The chart's own PKI, rendered only when certManager.issuerRef.name is empty:
a self-signed Issuer signs the CA Certificate, and the CA Issuer signs the serving Certificate.
*/}}
{{- define "pod-labeler.selfSignedIssuerName" -}}
{{- printf "%s-selfsigned" (include "pod-labeler.fullname" .) }}
{{- end }}

{{- define "pod-labeler.caName" -}}
{{- printf "%s-ca" (include "pod-labeler.fullname" .) }}
{{- end }}

{{/*
The issuerRef of the serving Certificate: the user's issuer, or the chart's CA Issuer.
*/}}
{{- define "pod-labeler.servingIssuerRef" -}}
{{- with .Values.certManager.issuerRef }}
{{- if .name }}
name: {{ .name }}
kind: {{ .kind }}
group: {{ .group }}
{{- else }}
name: {{ include "pod-labeler.caName" $ }}
kind: Issuer
group: cert-manager.io
{{- end }}
{{- end }}
{{- end }}

{{/*
Label keys in a map: values.schema.json checks their syntax, but one regex cannot also cap
the prefix at 253 characters (and helm's validator gives propertyNames errors no location),
so that rule is checked here, naming the field. Takes (dict "field" NAME "labels" MAP).
*/}}
{{- define "pod-labeler.checkLabelPrefixes" -}}
{{- range $key, $_ := .labels }}
{{- if gt (len (regexReplaceAll "/?[^/]*$" $key "")) 253 }}
{{- fail (printf "%s: the prefix of label key %q is longer than 253 characters" $.field $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The labels the server puts on every Pod, as `key=value` strings: label.key first,
then extraLabels sorted by key (range over a map is sorted).
*/}}
{{- define "pod-labeler.podLabelPairs" -}}
{{- include "pod-labeler.checkLabelPrefixes" (dict "field" "extraLabels" "labels" .Values.extraLabels) }}
{{- if hasKey .Values.extraLabels .Values.label.key }}
{{- fail (printf "extraLabels: %q repeats label.key; set its value with label.value instead" .Values.label.key) }}
{{- end }}
{{- $pairs := list (printf "%s=%v" .Values.label.key .Values.label.value) }}
{{- range $key, $value := .Values.extraLabels }}
{{- $pairs = append $pairs (printf "%s=%v" $key $value) }}
{{- end }}
{{- toYaml $pairs }}
{{- end }}

{{/*
The same labels as a CEL map literal for the MutatingAdmissionPolicy, in the same order.
Keys and values are quoted with toJson: a JSON string is also a valid CEL string literal.
*/}}
{{- define "pod-labeler.podLabelsCEL" -}}
{{- $entries := list }}
{{- range (include "pod-labeler.podLabelPairs" . | fromYamlArray) }}
{{- $pair := splitn "=" 2 . }}
{{- $entries = append $entries (printf "%s: %s" (toJson $pair._0) (toJson $pair._1)) }}
{{- end }}
{{- printf "{%s}" (join ", " $entries) }}
{{- end }}

{{/*
The webhook's name in the MutatingWebhookConfiguration: it must be a fully-qualified
DNS name, and unique to this release and namespace.
*/}}
{{- define "pod-labeler.webhookName" -}}
{{- printf "label.pods.%s.%s.svc" (include "pod-labeler.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
The namespaceSelector of the webhook, and of the policy: both modes select the same
namespaces. The chart's expressions always stay: the release's own namespace and
kube-system are never sent to the webhook (so it can always restart itself, even with
failurePolicy Fail), nor is webhook.excludedNamespaces, nor a namespace labelled
webhook.optOutLabel=true. webhook.namespaceSelector is added to them.
*/}}
{{- define "pod-labeler.namespaceSelector" -}}
{{- $excluded := concat (list .Release.Namespace "kube-system") .Values.webhook.excludedNamespaces | uniq }}
{{- $expressions := list
  (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $excluded)
  (dict "key" .Values.webhook.optOutLabel "operator" "NotIn" "values" (list "true")) }}
{{- with .Values.webhook.namespaceSelector }}
{{- if .matchLabels }}
matchLabels:
  {{- toYaml .matchLabels | nindent 2 }}
{{- end }}
{{- $expressions = concat $expressions (.matchExpressions | default list) }}
{{- end }}
matchExpressions:
  {{- toYaml $expressions | nindent 2 }}
{{- end }}

{{/*
The labels and the overwrite rule as annotations on the admission object (webhook or
policy), so that `pod-labeler audit` and `backfill` read what the release labels from the
same object as its selectors, in either mode. The labels are the JSON object of
podLabelsCEL (a CEL map literal of JSON strings is also JSON), in the same order.
*/}}
{{- define "pod-labeler.labelAnnotations" -}}
pod-labeler/labels: {{ include "pod-labeler.podLabelsCEL" . | toJson }}
pod-labeler/overwrite: {{ .Values.overwrite | toString | quote }}
{{- end }}

{{/*
The backfill hook (backfill.onInstall): its name, and the annotations that make each of
its objects a post-install/post-upgrade hook, deleted when the Job succeeds (and before a
new run). The RBAC gets a lower weight, so it exists before the Job starts.
*/}}
{{- define "pod-labeler.backfillName" -}}
{{- printf "%s-backfill" (include "pod-labeler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pod-labeler.backfillHook" -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: hook-succeeded,before-hook-creation
{{- end }}
