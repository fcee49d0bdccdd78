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
app.kubernetes.io/version: {{ include "pod-labeler.version" . | quote }}
app.kubernetes.io/component: {{ include "pod-labeler.mode" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The app.kubernetes.io/version label: always the chart's appVersion, never image.tag or
image.digest (a tag such as `0.1.0@sha256:...` is no label value, and the API server would
refuse every object). Made a valid label value: characters outside [A-Za-z0-9._-] become
`_` (a `+build` suffix), at most 63 characters, alphanumeric at both ends.
*/}}
{{- define "pod-labeler.version" -}}
{{- regexReplaceAll "[^A-Za-z0-9._-]" .Chart.AppVersion "_" | trunc 63 | trimAll "_.-" }}
{{- end }}

{{/*
The server's image: `repository:tag`, where the tag defaults to the appVersion;
with image.digest set, `repository@digest`, or `repository:tag@digest` when a tag is
also given (the runtime pulls by digest, the tag is only for people reading it).
*/}}
{{- define "pod-labeler.image" -}}
{{- with .Values.image }}
{{- if .digest }}
{{- if .tag }}
{{- printf "%s:%s@%s" .repository .tag .digest }}
{{- else }}
{{- printf "%s@%s" .repository .digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" .repository (.tag | default $.Chart.AppVersion) }}
{{- end }}
{{- end }}
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
The type of a certificate Secret the chart declares: Opaque, or the live Secret's type
(immutable), so that a Secret cert-manager made for an older release can be adopted.
`helm template` cannot look it up and renders Opaque. Takes (dict "namespace" "name").
*/}}
{{- define "pod-labeler.secretType" -}}
{{- (lookup "v1" "Secret" .namespace .name).type | default "Opaque" }}
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
The `annotations:` of the MutatingWebhookConfiguration, and of the policy and its binding:
webhook.annotations, plus (in webhook mode) the chart's own cert-manager.io/inject-ca-from,
with which cert-manager's CA injector fills in every webhook's clientConfig.caBundle from
the serving Certificate's Secret (ca.crt) and keeps it current across renewals. That one
always stays: a `cert-manager.io/inject-*` key in webhook.annotations fails the render
rather than fight the chart's injection.
*/}}
{{- define "pod-labeler.webhookAnnotations" -}}
{{- range $key, $_ := .Values.webhook.annotations }}
{{- if hasPrefix "cert-manager.io/inject-" $key }}
{{- fail (printf "webhook.annotations: %q is the chart's own (it injects the serving certificate's CA); remove it" $key) }}
{{- end }}
{{- if has $key (list "pod-labeler/labels" "pod-labeler/overwrite") }}
{{- fail (printf "webhook.annotations: %q is the chart's own (audit and backfill read the release's labels from it); remove it" $key) }}
{{- end }}
{{- end }}
{{- $annotations := include "pod-labeler.labelAnnotations" . | fromYaml }}
{{- if eq (include "pod-labeler.mode" .) "webhook" }}
{{- $_ := set $annotations "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "pod-labeler.servingCertificateName" .)) }}
{{- end }}
{{- $annotations = merge $annotations .Values.webhook.annotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
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
The admission and metrics ports are two listeners of one process (and, with hostNetwork,
two ports of the node): they must differ. The schema checks each is a port number.
*/}}
{{- define "pod-labeler.checkPorts" -}}
{{- if eq (int .Values.containerPort) (int .Values.metrics.port) }}
{{- fail (printf "containerPort and metrics.port are both %d: the server listens on each, so they must differ" (int .Values.containerPort)) }}
{{- end }}
{{- end }}

{{/*
Whether the API server honours a webhook's matchConditions: GA in Kubernetes 1.30, the
release that also made admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy GA.
helm's Capabilities list that API (group/version/Kind) only when asked of a cluster that
serves it, or when `helm template` is given --api-versions: without either, "false", so
that a render for an unknown cluster never carries a field an older API server rejects.
*/}}
{{- define "pod-labeler.matchConditionsAPI" -}}
admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy
{{- end }}

{{- define "pod-labeler.matchConditionsServed" -}}
{{- ternary "true" "false" (.Capabilities.APIVersions.Has (include "pod-labeler.matchConditionsAPI" .)) }}
{{- end }}

{{/*
A CEL expression, true when the webhook would change the Pod under the release's labels
and overwrite rule, so the API server calls it only then. With overwrite: unless every
label is there with our value. Without: unless every key is there. A match condition
that errors follows failurePolicy (Fail refuses the Pod), so it must never error: `has()`
guards the label map, which is left out of a Pod without labels, and `&&` stops at a
missing key before the index could fail. Keys and values are JSON strings, which are
also CEL string literals.
*/}}
{{- define "pod-labeler.needsLabelsCEL" -}}
{{- $terms := list "has(object.metadata.labels)" }}
{{- range (include "pod-labeler.podLabelPairs" . | fromYamlArray) }}
{{- $pair := splitn "=" 2 . }}
{{- $key := toJson $pair._0 }}
{{- $terms = append $terms (printf "%s in object.metadata.labels" $key) }}
{{- if $.Values.overwrite }}
{{- $terms = append $terms (printf "object.metadata.labels[%s] == %s" $key (toJson $pair._1)) }}
{{- end }}
{{- end }}
{{- printf "!(%s)" (join "\n  && " $terms) }}
{{- end }}

{{/*
The webhook's matchConditions: the chart's (webhook.skipLabelledPods), then the user's.
Empty where the cluster does not serve them; the user's own then fail the install rather
than be dropped (dropping one would send the webhook Pods it was meant to skip).
*/}}
{{- define "pod-labeler.matchConditions" -}}
{{- $conditions := list }}
{{- if .Values.webhook.skipLabelledPods }}
{{- $conditions = append $conditions (dict "name" "pod-lacks-a-release-label" "expression" (include "pod-labeler.needsLabelsCEL" .)) }}
{{- end }}
{{- $conditions = concat $conditions .Values.webhook.matchConditions }}
{{- if eq (include "pod-labeler.matchConditionsServed" .) "true" }}
{{- with $conditions }}
{{- toYaml . }}
{{- end }}
{{- else if .Values.webhook.matchConditions }}
{{- fail (printf "webhook.matchConditions: this cluster does not serve matchConditions (Kubernetes 1.30 or later, found by its %s API). With helm template, pass --api-versions %s if the target cluster serves it." (include "pod-labeler.matchConditionsAPI" .) (include "pod-labeler.matchConditionsAPI" .)) }}
{{- end }}
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
