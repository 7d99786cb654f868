package observe

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/inference-sandbox/sandbox/internal/components/inferenceset"
	"github.com/inference-sandbox/sandbox/internal/mocker"
	"github.com/inference-sandbox/sandbox/internal/observe/podmetrics"
)

// inferenceSetGVR is the resource the modeldeployment chart writes.
var inferenceSetGVR = schema.GroupVersionResource{Group: "kaito.sh", Version: "v1alpha1", Resource: "inferencesets"}

// Scaling annotations of keda-kaito-scaler <= v0.5 (shared/facts/kaito-keda-auth-facts.md §3.3).
const (
	annotationAutoProvision = "scaledobject.kaito.sh/auto-provision"
	annotationMinReplicas   = "scaledobject.kaito.sh/min-replicas"
	annotationMaxReplicas   = "scaledobject.kaito.sh/max-replicas"
	annotationThreshold     = "scaledobject.kaito.sh/threshold"
	annotationMetricName    = "scaledobject.kaito.sh/metricName"
	defaultMetricName       = "vllm:num_requests_waiting"
)

// Source names shown in the dashboard's status line.
const (
	SourceInferenceSets = "inferencesets"
	SourcePods          = "pods"
	SourceNodes         = "nodes"
	SourceHPAs          = "hpas"
	SourceEvents        = "events"
	SourceMetrics       = "metrics"
	sourceDecisionsPfx  = "decisions "
)

// simPort is the simulator's (vLLM's) port, where /metrics is served.
const simPort = 5000

// Options configure a Watcher. Zero durations take the defaults.
type Options struct {
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	// OpenStream and Fetch default to the API server's service and pod proxies.
	OpenStream OpenStream
	Fetch      podmetrics.FetchFunc
	// Endpoints maps a namespace to the gateway URL shown for its models.
	Endpoints map[string]string
	// ScrapeEvery is the pod-metrics period (2 s); Workers bounds concurrent scrapes (4).
	ScrapeEvery time.Duration
	Workers     int
	// MinEmit is the shortest gap between snapshots (250 ms); MaxEmit the longest (1 s), so
	// ages and staleness keep moving on an idle cluster.
	MinEmit, MaxEmit time.Duration
	// Window is how far back rates, quantiles and error rates look (1 min).
	Window time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

const (
	maxDecisions = 500
	maxScaling   = 200
	maxEvents    = 8
)

// Watcher keeps informer caches, pod metrics and decision streams of a sandbox, and hands
// batched snapshots to a sink.
type Watcher struct {
	o Options

	mu        sync.Mutex
	dirty     bool
	sources   map[string]*Source
	histories map[types.UID]*history
	scrapeErr map[types.UID]string
	decisions []Decision
	scaling   []ScalingEvent
	unsched   map[types.UID]bool
	events    map[string][]EventLine // namespace/name of the involved object
	followers map[string]context.CancelFunc
	streaming map[string]bool // namespace/model -> stream connected

	// started is when Run began; what happened before is known only from events.
	started time.Time

	isInf, podInf, nodeInf, hpaInf cache.SharedIndexInformer
	scraper                        *podmetrics.Scraper
}

// NewWatcher returns a watcher; Run starts it.
func NewWatcher(o Options) *Watcher {
	if o.ScrapeEvery <= 0 {
		o.ScrapeEvery = 2 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MinEmit <= 0 {
		o.MinEmit = 250 * time.Millisecond
	}
	if o.MaxEmit <= 0 {
		o.MaxEmit = time.Second
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OpenStream == nil {
		o.OpenStream = ServiceProxyStream(o.Clientset)
	}
	if o.Fetch == nil {
		o.Fetch = podmetrics.ProxyFetch(o.Clientset)
	}
	// A scrape must end before the next one is due.
	scraper := &podmetrics.Scraper{Fetch: o.Fetch, Workers: o.Workers, Timeout: max(o.ScrapeEvery*3/4, 500*time.Millisecond)}
	return &Watcher{o: o, scraper: scraper, sources: map[string]*Source{}, histories: map[types.UID]*history{},
		scrapeErr: map[types.UID]string{}, unsched: map[types.UID]bool{}, events: map[string][]EventLine{},
		followers: map[string]context.CancelFunc{}, streaming: map[string]bool{}}
}

// ServiceProxyStream opens GET <model>-inferencepool-epp:9090/decisions?follow=1 through the
// API server's service proxy.
func ServiceProxyStream(cs kubernetes.Interface) OpenStream {
	return func(ctx context.Context, namespace, model string, backlog int) (io.ReadCloser, error) {
		return cs.CoreV1().Services(namespace).ProxyGet("http", model+"-inferencepool-epp", "9090", "/decisions",
			map[string]string{"follow": "1", "limit": strconv.Itoa(backlog)}).Stream(ctx)
	}
}

// Run starts the informers, the scrape loop and the decision followers, and calls sink with
// a snapshot whenever something changed (at most every MinEmit, at least every MaxEmit) until
// ctx ends. sink runs on Run's goroutine; a slow sink delays snapshots, never the informers.
func (w *Watcher) Run(ctx context.Context, sink func(Snapshot)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.mu.Lock()
	w.started = w.o.Now()
	w.mu.Unlock()
	factory := informers.NewSharedInformerFactoryWithOptions(w.o.Clientset, 0)
	modelPods := informers.NewSharedInformerFactoryWithOptions(w.o.Clientset, 0,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = inferenceset.LabelCreatedBy }))
	dyn := dynamicinformer.NewDynamicSharedInformerFactory(w.o.Dynamic, 0)

	w.isInf = dyn.ForResource(inferenceSetGVR).Informer()
	w.podInf = modelPods.Core().V1().Pods().Informer()
	w.nodeInf = factory.Core().V1().Nodes().Informer()
	w.hpaInf = factory.Autoscaling().V2().HorizontalPodAutoscalers().Informer()
	evInf := factory.Core().V1().Events().Informer()

	for name, inf := range map[string]cache.SharedIndexInformer{SourceInferenceSets: w.isInf, SourcePods: w.podInf,
		SourceNodes: w.nodeInf, SourceHPAs: w.hpaInf, SourceEvents: evInf} {
		name := name
		w.sources[name] = &Source{Name: name}
		_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			w.setSource(name, fmt.Errorf("watch: %w", err))
		})
	}
	w.sources[SourceMetrics] = &Source{Name: SourceMetrics}

	touch := func(name string) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.setSource(name, nil) },
			UpdateFunc: func(any, any) { w.setSource(name, nil) },
			DeleteFunc: func(any) { w.setSource(name, nil) },
		}
	}
	_, _ = w.nodeInf.AddEventHandler(touch(SourceNodes))
	_, _ = w.hpaInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.setSource(SourceHPAs, nil) },
		UpdateFunc: func(_, o any) { w.onHPA(o) },
		DeleteFunc: func(any) { w.setSource(SourceHPAs, nil) },
	})
	_, _ = w.isInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.setSource(SourceInferenceSets, nil) },
		UpdateFunc: w.onInferenceSetUpdate,
		DeleteFunc: func(any) { w.setSource(SourceInferenceSets, nil) },
	})
	_, _ = w.podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.onPod(o) },
		UpdateFunc: func(_, o any) { w.onPod(o) },
		DeleteFunc: func(any) { w.setSource(SourcePods, nil) },
	})
	_, _ = evInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.onEvent(o) },
		UpdateFunc: func(_, o any) { w.onEvent(o) },
	})

	factory.Start(ctx.Done())
	modelPods.Start(ctx.Done())
	dyn.Start(ctx.Done())
	defer factory.Shutdown()
	defer modelPods.Shutdown()
	defer dyn.Shutdown()
	// Informers mark themselves live once synced; until then the view shows them stale.
	for name, inf := range map[string]cache.SharedIndexInformer{SourceInferenceSets: w.isInf, SourcePods: w.podInf,
		SourceNodes: w.nodeInf, SourceHPAs: w.hpaInf, SourceEvents: evInf} {
		name, inf := name, inf
		go func() {
			if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				w.setSource(name, nil)
			}
		}()
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); w.scrapeLoop(ctx) }()

	tick := time.NewTicker(w.o.MinEmit)
	defer tick.Stop()
	var lastEmit time.Time
	for {
		select {
		case <-ctx.Done():
			w.stopFollowers()
			return nil
		case <-tick.C:
		}
		now := w.o.Now()
		w.mu.Lock()
		due := w.dirty || now.Sub(lastEmit) >= w.o.MaxEmit
		w.dirty = false
		w.mu.Unlock()
		if !due {
			continue
		}
		w.syncFollowers(ctx)
		sink(w.Snapshot())
		lastEmit = now
	}
}

func (w *Watcher) setSource(name string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.sources[name]
	if s == nil {
		s = &Source{Name: name}
		w.sources[name] = s
	}
	if err != nil {
		s.Err = err.Error()
	} else {
		s.Err, s.Updated = "", w.o.Now()
	}
	w.dirty = true
}

func (w *Watcher) onInferenceSetUpdate(oldObj, newObj any) {
	w.setSource(SourceInferenceSets, nil)
	oldIS, err1 := toInferenceSet(oldObj)
	newIS, err2 := toInferenceSet(newObj)
	if err1 != nil || err2 != nil || oldIS.DesiredReplicas() == newIS.DesiredReplicas() {
		return
	}
	ev := ScalingEvent{Time: w.o.Now(), Model: newIS.Name, From: oldIS.DesiredReplicas(), To: newIS.DesiredReplicas(),
		Kind: KindScaleUp}
	if ev.To < ev.From {
		ev.Kind = KindScaleDown
	}
	ev.Metric, ev.Threshold = scalingMetric(newIS)
	if hpa := w.hpaFor(newIS.Namespace, newIS.Name); hpa != nil {
		if v, ok := hpaMetric(hpa); ok {
			ev.Value, ev.HasValue = v, true
			// The HPA's status already tells of this change: its reading is the cause.
			ev.confirmed = hpa.Status.DesiredReplicas == ev.To
		}
		ev.Message = hpaReason(hpa)
	}
	w.mu.Lock()
	w.scaling = appendBounded(w.scaling, ev, maxScaling)
	w.mu.Unlock()
}

// onHPA completes the latest replica change with the reading that caused it: the HPA
// controller scales the target first and writes the metric it acted on into its status just
// after, so at the moment the InferenceSet changes the HPA still shows the previous reading.
func (w *Watcher) onHPA(obj any) {
	w.setSource(SourceHPAs, nil)
	h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok || h.Spec.ScaleTargetRef.Kind != "InferenceSet" {
		return
	}
	v, hasValue := hpaMetric(h)
	now := w.o.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.scaling) - 1; i >= 0; i-- {
		ev := &w.scaling[i]
		if now.Sub(ev.Time) > 30*time.Second {
			return
		}
		if ev.Model != h.Spec.ScaleTargetRef.Name || ev.Kind == KindUnschedulable {
			continue
		}
		if !ev.confirmed && h.Status.DesiredReplicas == ev.To && hasValue {
			ev.Value, ev.HasValue, ev.confirmed = v, true, true
			if why := hpaReason(h); why != "" {
				ev.Message = why
			}
			w.dirty = true
		}
		return
	}
}

func (w *Watcher) onPod(obj any) {
	w.setSource(SourcePods, nil)
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	why, unsched := unschedulableReason(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !unsched || w.unsched[p.UID] {
		return
	}
	w.unsched[p.UID] = true
	// The condition's own time: a pod already Pending when the dashboard starts keeps its age.
	at := w.o.Now()
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && !c.LastTransitionTime.IsZero() {
			at = c.LastTransitionTime.Time
		}
	}
	w.scaling = appendBounded(w.scaling, ScalingEvent{Time: at, Model: p.Labels[inferenceset.LabelCreatedBy],
		Kind: KindUnschedulable, Pod: p.Name, Message: why}, maxScaling)
}

func (w *Watcher) onEvent(obj any) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return
	}
	key := ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name
	t := ev.LastTimestamp.Time
	if t.IsZero() {
		t = ev.EventTime.Time
	}
	if t.IsZero() {
		t = ev.CreationTimestamp.Time
	}
	line := EventLine{Time: t, Type: ev.Type, Reason: ev.Reason, Message: strings.TrimSpace(ev.Message), Count: ev.Count}
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := w.events[key]
	// An updated event (count++) replaces its earlier line.
	for i, l := range lines {
		if l.Reason == line.Reason && l.Message == line.Message {
			lines = append(lines[:i], lines[i+1:]...)
			break
		}
	}
	lines = append(lines, line)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
	if len(lines) > maxEvents {
		lines = lines[len(lines)-maxEvents:]
	}
	w.events[key] = lines
	w.sources[SourceEvents].Updated, w.sources[SourceEvents].Err = w.o.Now(), ""
	w.dirty = true
}

// syncFollowers follows the decision stream of every model and stops following deleted ones.
func (w *Watcher) syncFollowers(ctx context.Context) {
	want := map[string][2]string{}
	for _, obj := range w.isInf.GetStore().List() {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			want[u.GetNamespace()+"/"+u.GetName()] = [2]string{u.GetNamespace(), u.GetName()}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, stop := range w.followers {
		if _, ok := want[key]; !ok {
			stop()
			delete(w.followers, key)
			delete(w.streaming, key)
			delete(w.sources, sourceDecisionsPfx+key)
		}
	}
	for key, nm := range want {
		if _, ok := w.followers[key]; ok {
			continue
		}
		fctx, stop := context.WithCancel(ctx)
		w.followers[key] = stop
		key, ns, model := key, nm[0], nm[1]
		src := sourceDecisionsPfx + key
		w.sources[src] = &Source{Name: src}
		go follow(fctx, w.o.OpenStream, ns, model, func(d Decision) {
			w.mu.Lock()
			w.decisions = appendBounded(w.decisions, d, maxDecisions)
			w.sources[src].Updated, w.sources[src].Err = w.o.Now(), ""
			w.dirty = true
			w.mu.Unlock()
		}, func(err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if fctx.Err() != nil {
				return
			}
			w.streaming[key] = err == nil
			if err != nil {
				w.sources[src].Err = err.Error()
			} else {
				w.sources[src].Updated, w.sources[src].Err = w.o.Now(), ""
			}
			w.dirty = true
		})
	}
}

func (w *Watcher) stopFollowers() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, stop := range w.followers {
		stop()
		delete(w.followers, key)
	}
}

// scrapeLoop scrapes every model pod's metrics each ScrapeEvery on a bounded worker pool.
func (w *Watcher) scrapeLoop(ctx context.Context) {
	t := time.NewTicker(w.o.ScrapeEvery)
	defer t.Stop()
	for {
		w.scrapeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) scrapeOnce(ctx context.Context) {
	var pods []*corev1.Pod
	var targets []podmetrics.Target
	for _, obj := range w.podInf.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			pods = append(pods, p)
			targets = append(targets, podmetrics.Target{Namespace: p.Namespace, Pod: p.Name, Port: simPort})
		}
	}
	if len(pods) == 0 {
		w.setSource(SourceMetrics, nil)
		return
	}
	results := w.scraper.Scrape(ctx, targets)
	now := w.o.Now()

	w.mu.Lock()
	defer w.mu.Unlock()
	failed, firstErr := 0, ""
	seen := map[types.UID]bool{}
	for i, r := range results {
		pod := pods[i]
		seen[pod.UID] = true
		var sample Sample
		err := r.Err
		if err == nil {
			sample, err = SampleFrom(r.Families, now)
		}
		if err != nil {
			failed++
			w.scrapeErr[pod.UID] = err.Error()
			if firstErr == "" {
				firstErr = err.Error()
			}
			continue
		}
		delete(w.scrapeErr, pod.UID)
		h := w.histories[pod.UID]
		if h == nil {
			h = &history{window: w.o.Window}
			w.histories[pod.UID] = h
		}
		prev, hadPrev := h.latest()
		h.add(sample)
		model := pod.Labels[inferenceset.LabelCreatedBy]
		// Without the picker's record, the requests a pod served since the last scrape are the
		// best account of where traffic went.
		if hadPrev && !w.streaming[pod.Namespace+"/"+model] {
			if d := sample.Success - prev.Success; d > 0 {
				w.decisions = appendBounded(w.decisions, Decision{Time: sample.Time, Model: model, Pod: pod.Name,
					Endpoint: pod.Status.PodIP, Status: "success", Derived: true, Count: int(d)}, maxDecisions)
			}
		}
	}
	for uid := range w.histories {
		if !seen[uid] && !w.podExists(uid) {
			delete(w.histories, uid)
			delete(w.scrapeErr, uid)
		}
	}
	src := w.sources[SourceMetrics]
	if failed == len(pods) {
		src.Err = fmt.Sprintf("all %d pods failed: %s", failed, firstErr)
	} else {
		// Partial failures show on the pods themselves.
		src.Err, src.Updated = "", now
	}
	w.dirty = true
}

func (w *Watcher) podExists(uid types.UID) bool {
	for _, obj := range w.podInf.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok && p.UID == uid {
			return true
		}
	}
	return false
}

func (w *Watcher) hpaFor(namespace, name string) *autoscalingv2.HorizontalPodAutoscaler {
	if w.hpaInf == nil {
		return nil
	}
	for _, obj := range w.hpaInf.GetStore().List() {
		h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
		if ok && h.Namespace == namespace && h.Spec.ScaleTargetRef.Name == name && h.Spec.ScaleTargetRef.Kind == "InferenceSet" {
			return h
		}
	}
	return nil
}

// Snapshot builds a snapshot from the caches now.
func (w *Watcher) Snapshot() Snapshot {
	now := w.o.Now()
	var sets []*inferenceset.InferenceSet
	for _, obj := range w.isInf.GetStore().List() {
		if is, err := toInferenceSet(obj); err == nil {
			sets = append(sets, is)
		}
	}
	var pods []*corev1.Pod
	for _, obj := range w.podInf.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	var nodes []*corev1.Node
	for _, obj := range w.nodeInf.GetStore().List() {
		if n, ok := obj.(*corev1.Node); ok {
			nodes = append(nodes, n)
		}
	}
	var hpas []*autoscalingv2.HorizontalPodAutoscaler
	for _, obj := range w.hpaInf.GetStore().List() {
		if h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			hpas = append(hpas, h)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	in := BuildInput{Now: now, Window: w.o.Window, Sets: sets, Pods: pods, Nodes: nodes, HPAs: hpas,
		Endpoints: w.o.Endpoints, Events: w.events, Histories: w.histories, ScrapeErr: w.scrapeErr,
		Streaming: w.streaming, Decisions: w.decisions}
	snap := Build(in)
	snap.Decisions = podNames(newest(w.decisions, maxDecisions), pods)
	snap.Scaling = append(pastScaling(hpas, w.events, w.started), newest(w.scaling, maxScaling)...)
	for i := range snap.Scaling {
		if why := rescaleEvent(snap.Scaling[i], hpas, w.events); why != "" {
			snap.Scaling[i].Message = why
		}
	}
	sort.SliceStable(snap.Scaling, func(i, j int) bool { return snap.Scaling[i].Time.Before(snap.Scaling[j].Time) })
	for _, s := range w.sources {
		snap.Sources = append(snap.Sources, *s)
	}
	sort.Slice(snap.Sources, func(i, j int) bool { return snap.Sources[i].Name < snap.Sources[j].Name })
	return snap
}

func toInferenceSet(obj any) (*inferenceset.InferenceSet, error) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("unexpected %T in the InferenceSet cache", obj)
	}
	var is inferenceset.InferenceSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &is); err != nil {
		return nil, fmt.Errorf("decoding InferenceSet %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &is, nil
}

func scalingMetric(is *inferenceset.InferenceSet) (string, float64) {
	name := is.Annotations[annotationMetricName]
	if name == "" {
		name = defaultMetricName
	}
	th, _ := strconv.ParseFloat(is.Annotations[annotationThreshold], 64)
	return name, th
}

// hpaMetric is the HPA's current value of its first metric, per replica where it averages.
func hpaMetric(h *autoscalingv2.HorizontalPodAutoscaler) (float64, bool) {
	for _, m := range h.Status.CurrentMetrics {
		var cur *autoscalingv2.MetricValueStatus
		switch {
		case m.External != nil:
			cur = &m.External.Current
		case m.Pods != nil:
			cur = &m.Pods.Current
		case m.Object != nil:
			cur = &m.Object.Current
		}
		if cur == nil {
			continue
		}
		if cur.AverageValue != nil {
			return cur.AverageValue.AsApproximateFloat64(), true
		}
		if cur.Value != nil {
			return cur.Value.AsApproximateFloat64(), true
		}
	}
	return 0, false
}

// pastScaling turns the HPAs' SuccessfulRescale events from before the watcher started (the
// API server keeps events for an hour) into timeline entries, so the timeline has a history.
func pastScaling(hpas []*autoscalingv2.HorizontalPodAutoscaler, events map[string][]EventLine, started time.Time) []ScalingEvent {
	var out []ScalingEvent
	for _, h := range hpas {
		if h.Spec.ScaleTargetRef.Kind != "InferenceSet" {
			continue
		}
		for _, l := range events[h.Namespace+"/"+h.Name] {
			var to int32
			if l.Reason != "SuccessfulRescale" || !l.Time.Before(started) {
				continue
			}
			if _, err := fmt.Sscanf(l.Message, "New size: %d;", &to); err != nil {
				continue
			}
			kind := KindScaleUp
			if strings.Contains(l.Message, "below target") {
				kind = KindScaleDown
			}
			out = append(out, ScalingEvent{Time: l.Time, Model: h.Spec.ScaleTargetRef.Name, Kind: kind, To: to,
				Message: l.Message, Past: true, confirmed: true})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// rescaleEvent is the HPA's SuccessfulRescale event for a replica change ("New size: 3;
// reason: external metric ... above target"), which says why better than its conditions do.
func rescaleEvent(ev ScalingEvent, hpas []*autoscalingv2.HorizontalPodAutoscaler, events map[string][]EventLine) string {
	if ev.Kind == KindUnschedulable || ev.Past {
		return ""
	}
	prefix := fmt.Sprintf("New size: %d;", ev.To)
	for _, h := range hpas {
		if h.Spec.ScaleTargetRef.Kind != "InferenceSet" || h.Spec.ScaleTargetRef.Name != ev.Model {
			continue
		}
		lines := events[h.Namespace+"/"+h.Name]
		for i := len(lines) - 1; i >= 0; i-- {
			l := lines[i]
			if l.Reason == "SuccessfulRescale" && strings.HasPrefix(l.Message, prefix) && absDuration(l.Time.Sub(ev.Time)) < 30*time.Second {
				return l.Message
			}
		}
	}
	return ""
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// hpaReason is the HPA's own account of its last decision (condition AbleToScale/ScalingActive).
func hpaReason(h *autoscalingv2.HorizontalPodAutoscaler) string {
	for _, c := range h.Status.Conditions {
		if c.Type == autoscalingv2.AbleToScale && c.Reason == "SucceededRescale" {
			return c.Message
		}
	}
	return ""
}

func unschedulableReason(p *corev1.Pod) (string, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			why, _, _ := strings.Cut(c.Message, ". ")
			return why, true
		}
	}
	return "", false
}

// appendBounded appends v and trims s to its newest n entries, copying only once it holds 2n,
// so a busy decision stream costs amortized O(1) per record.
func appendBounded[T any](s []T, v T, n int) []T {
	s = append(s, v)
	if len(s) > 2*n {
		s = append(s[:0:0], s[len(s)-n:]...)
	}
	return s
}

// newest returns the newest n entries of s.
func newest[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// gpuRequest is what a pod asks of the fake GPUs.
func gpuRequest(p *corev1.Pod) int64 {
	var n int64
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Requests[mocker.GPUResource]; ok {
			n += q.Value()
		} else if q, ok := c.Resources.Limits[mocker.GPUResource]; ok {
			n += q.Value()
		}
	}
	return n
}

// podNames copies decisions with the picker's endpoint names (upstream's "<pod>-rank-<n>")
// replaced by the names of the pods that hold those addresses, so every view names pods the
// same way. Addresses no current pod holds keep the picker's name.
func podNames(ds []Decision, pods []*corev1.Pod) []Decision {
	byIP := make(map[string]string, len(pods))
	for _, p := range pods {
		if p.Status.PodIP != "" {
			byIP[p.Status.PodIP] = p.Name
		}
	}
	name := func(endpoint, fallback string) string {
		host := endpoint
		if h, _, err := net.SplitHostPort(endpoint); err == nil {
			host = h
		}
		if n, ok := byIP[host]; ok {
			return n
		}
		return fallback
	}
	out := make([]Decision, len(ds))
	for i, d := range ds {
		if d.Endpoint != "" && !d.Derived {
			d.Pod = name(d.Endpoint, d.Pod)
			if len(d.Candidates) > 0 {
				cands := make([]Candidate, len(d.Candidates))
				for j, c := range d.Candidates {
					c.Pod = name(c.Endpoint, c.Pod)
					cands[j] = c
				}
				d.Candidates = cands
			}
		}
		out[i] = d
	}
	return out
}
