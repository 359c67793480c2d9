// kwok Stages for pods (kwok replaces its default pod stages when any are configured: see
// sigs.k8s.io/kwok pkg/kwok/cmd/root.go getDefaultPodStages). pod-ready, pod-complete and pod-delete
// are upstream's kustomize/stage/pod/fast/*.yaml at v0.6.1; the lab adds readiness that follows an
// annotation (a sealed OpenBAO, a failing probe, a stalled rollout) and Job pods that fail:
//   lab.pedro-ops.io/ready: "false"   the pod runs but is NotReady (its readiness probe fails)
//   lab.pedro-ops.io/outcome: fail    a Job pod's container exits 1 (restartCount from
//                                     lab.pedro-ops.io/restarts, message from lab.pedro-ops.io/message)
//   lab.pedro-ops.io/outcome: stall   a Job pod runs forever
//   lab.pedro-ops.io/duration: 300ms  how long a Job pod runs before it ends
const READY = `.metadata.annotations["lab.pedro-ops.io/ready"]`;
const OUTCOME = `.metadata.annotations["lab.pedro-ops.io/outcome"]`;
const READY_COND = `.status.conditions.[] | select( .type == "Ready" ) | .status`;

const containers = (ready: boolean) => `containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: ${ready}
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}`;

const conditions = (ready: boolean) => `conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "${ready ? 'True' : 'False'}"
        type: Ready
        ${ready ? '' : 'reason: ContainersNotReady'}
      - lastTransitionTime: {{ $now | Quote }}
        status: "${ready ? 'True' : 'False'}"
        type: ContainersReady
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled`;

// Every lab Stage acts on pods that are not being deleted; pod-delete below is the one that does.
const liveStage = (name: string, rest: string) => `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ${name}
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
${rest}`;

const start = (name: string, ready: boolean) =>
  liveStage(
    name,
    `    - key: '.status.podIP'
      operator: 'DoesNotExist'
    - key: '.spec.nodeName'
      operator: 'Exists'
    - key: '${READY}'
      operator: '${ready ? 'NotIn' : 'In'}'
      values: ['false']
  next:
    statusTemplate: |
      {{ $now := Now }}
      ${conditions(ready)}
      ${containers(ready)}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
`,
  );

const flip = (name: string, ready: boolean) =>
  liveStage(
    name,
    `    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.podIP'
      operator: 'Exists'
    - key: '${READY}'
      operator: '${ready ? 'NotIn' : 'In'}'
      values: ['false']
    - key: '${READY_COND}'
      operator: 'In'
      values: ['${ready ? 'False' : 'True'}']
  next:
    statusTemplate: |
      {{ $now := Now }}
      ${conditions(ready)}
      ${containers(ready)}
`,
  );

const jobEnd = (name: string, fail: boolean) =>
  liveStage(
    name,
    `    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '${OUTCOME}'
      operator: '${fail ? 'In' : 'NotIn'}'
      values: ${fail ? "['fail']" : "['fail', 'stall']"}
    - key: '.status.containerStatuses.[].state.terminated'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: 300
    durationFrom:
      expressionFrom: '.metadata.annotations["lab.pedro-ops.io/duration"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: ${fail ? `{{ or (index $root.metadata.annotations "lab.pedro-ops.io/restarts") "0" }}` : '0'}
        started: false
        state:
          terminated:
            exitCode: ${fail ? 1 : 0}
            finishedAt: {{ $now | Quote }}
            reason: ${fail ? 'Error' : 'Completed'}
            ${fail ? `message: {{ or (index $root.metadata.annotations "lab.pedro-ops.io/message") "" | Quote }}` : ''}
            startedAt: {{ $now | Quote }}
      {{ end }}
      ${
        fail
          ? // restartPolicy OnFailure: the kubelet restarts the container in place (the Job controller
            // counts restartCount against backoffLimit); Never: the pod fails.
            `phase: {{ if eq .spec.restartPolicy "Never" }}Failed{{ else }}Running{{ end }}`
          : 'phase: Succeeded'
      }
`,
  );

const DELETE = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers:
      empty: true
    delete: true
`;

export const POD_STAGES = [
  start('pod-ready', true),
  start('pod-running-not-ready', false),
  flip('pod-not-ready', false),
  flip('pod-ready-again', true),
  jobEnd('pod-complete', false),
  jobEnd('pod-fail', true),
  DELETE,
].join('---\n');

// kwok's default node stages at v0.6.1 (kwok replaces them when any are configured, as for pods: pkg/kwok/cmd/root.go
// getDefaultNodeStages; node lease on, so node-heartbeat), verbatim, plus upstream's chaos stage node-not-ready,
// which turns Ready False on nodes labelled node-not-ready.stage.kwok.x-k8s.io=true (the supervisor's
// notReadyOn fault) and outweighs node-initialize while the label is there (pkg/utils/lifecycle/lifecycle.go:
// stages of weight 0 lose to a matching stage with weight).
export const NODE_STAGES = [
  `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID \`""\` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID \`""\` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage \`""\` }}
        systemUUID: {{ or $nodeInfo.systemUUID \`""\` }}
      phase: Running
`,
  `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'True'
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
  immediateNextStage: true
`,
  `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-not-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.metadata.labels["node-not-ready.stage.kwok.x-k8s.io"]'
      operator: 'In'
      values:
      - 'true'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
  delay:
    durationMilliseconds: 1000
    durationFrom:
      expressionFrom: '.metadata.annotations["node-not-ready.stage.kwok.x-k8s.io/delay"]'
    jitterDurationMilliseconds: 1000
    jitterDurationFrom:
      expressionFrom: '.metadata.annotations["node-not-ready.stage.kwok.x-k8s.io/jitter-delay"]'
  weight: 10000
  weightFrom:
    expressionFrom: '.metadata.annotations["node-not-ready.stage.kwok.x-k8s.io/weight"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $defaultReason := "nodeFailed" }}
      {{ $defaultMessage := "node failed" }}
      {{ $annotations := or .metadata.annotations dict }}
      {{ $failureType := or ( index $annotations "node-not-ready.stage.kwok.x-k8s.io/type" ) "" }}
      {{ $failureReason := or ( index $annotations "node-not-ready.stage.kwok.x-k8s.io/reason" ) $defaultReason }}
      {{ $failureMessage := or ( index $annotations "node-not-ready.stage.kwok.x-k8s.io/message" ) $defaultMessage }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      {{ if eq .type "Ready" }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ $failureMessage | Quote }}
        reason: {{ $failureReason | Quote }}
        status: "False"
        type: {{ .type  | Quote}}
      {{ else if eq .type $failureType }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ $failureMessage | Quote }}
        reason: {{ $failureReason | Quote }}
        status: "True"
        type: {{ .type  | Quote}}
      {{ else }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}
      {{ end }}
`,
].join('---\n');
