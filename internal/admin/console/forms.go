package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/idem-dev/idem/internal/admin/api"
)

// The forms that change topics and groups. Each calls one api.Service
// method as the request's user, so the console can do exactly what /v1
// does and no more. Cross-site posts are refused before they get here
// (http.CrossOriginProtection in package admin). A success redirects to a
// page that says what was done (POST, redirect, GET: a reload does not
// repeat it); a failure draws the form's page again with the typed values,
// the problem and its status, and the message beside the field at fault.

// maxFormBytes bounds a form's body; a produced test message is the
// largest thing a form carries.
const maxFormBytes = 1 << 20

// form is a submitted form as its page draws it again: which form it was
// (a page may hold several), the values typed and each faulty field's
// message. The zero form draws empty inputs.
type form struct {
	ID     string
	Values url.Values
	Errors map[string]string
}

// Of is f if it is the form id, else the zero form: the other forms of the
// page are drawn empty.
func (f form) Of(id string) form {
	if f.ID == id {
		return f
	}
	return form{}
}

// Value is what was typed in field k.
func (f form) Value(k string) string { return f.Values.Get(k) }

// Err is the message of field k, "" when it is not at fault.
func (f form) Err(k string) string { return f.Errors[k] }

// Sent says that f was submitted (and is drawn again with its values).
func (f form) Sent() bool { return f.Values != nil }

// invalid is a 400 problem for a form field the console could not read.
func invalid(detail string) *api.Problem {
	return &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest, Detail: detail}
}

// readForm parses the posted form, bounded in size; a body it cannot read
// is answered here (the second result false).
func (c *Console) readForm(w http.ResponseWriter, r *http.Request, id string) (form, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		c.fail(w, r, &api.Problem{Title: http.StatusText(status), Status: status, Detail: err.Error()})
		return form{}, false
	}
	return form{ID: id, Values: r.PostForm, Errors: map[string]string{}}, true
}

// refuse notes err on field (when the error belongs to one) and returns
// the problem the page shows.
func (f form) refuse(field string, err error) *api.Problem {
	p := api.AsProblem(err)
	if field != "" {
		f.Errors[field] = p.Detail
	}
	return p
}

// keyValueLines reads "key=value" lines (blank lines skipped): configs and
// headers. The value may be empty or contain '='; the key may not be empty.
func keyValueLines(text, what string) ([][2]string, error) {
	var out [][2]string
	for i, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("line %d of the %s is not key=value: %q", i+1, what, line)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// redirect ends a successful form: GET target with the notice done.
func redirect(w http.ResponseWriter, r *http.Request, target, done string) {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	http.Redirect(w, r, target+sep+"done="+url.QueryEscape(done), http.StatusSeeOther)
}

// createTopic handles the topics page's create form: name, partitions
// (blank for the broker's default) and configs as key=value lines.
func (c *Console) createTopic(w http.ResponseWriter, r *http.Request) {
	f, ok := c.readForm(w, r, "create")
	if !ok {
		return
	}
	req := api.CreateTopicRequest{Name: strings.TrimSpace(f.Value("name")), Configs: map[string]string{}}
	fail := func(field string, err error) {
		p := f.refuse(field, err)
		drawPaged(c, w, r, p.Status, p, f, topicsList)
	}
	if v := strings.TrimSpace(f.Value("partitions")); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			fail("partitions", invalid(fmt.Sprintf("partitions must be a whole number, 1 or more (blank for the broker's default), not %q", v)))
			return
		}
		req.Partitions = int32(n)
	}
	lines, err := keyValueLines(f.Value("configs"), "configs")
	if err != nil {
		fail("configs", invalid(err.Error()))
		return
	}
	for _, kv := range lines {
		if _, dup := req.Configs[kv[0]]; dup {
			fail("configs", invalid(fmt.Sprintf("config %s is given twice", kv[0])))
			return
		}
		req.Configs[kv[0]] = kv[1]
	}
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	t, err := c.cfg.API.CreateTopic(r.Context(), cn, req)
	if err != nil {
		fail(createTopicField(req, err), err)
		return
	}
	redirect(w, r, "/topics/"+url.PathEscape(t.Name),
		fmt.Sprintf("Topic %s created with %d partitions.", t.Name, len(t.Partitions)))
}

// createTopicField is the create form's field a refusal is about, "" for
// none (an authorization failure, the broker unreachable).
func createTopicField(req api.CreateTopicRequest, err error) string {
	if req.Name == "" {
		return "name"
	}
	return api.CreateTopicField(err)
}

// deleteTopic handles the topic page's delete form: the topic's name must
// be typed again, so a topic is not lost to a stray click.
func (c *Console) deleteTopic(w http.ResponseWriter, r *http.Request) {
	f, ok := c.readForm(w, r, "delete")
	if !ok {
		return
	}
	name := r.PathValue("name")
	if f.Value("confirm") != name {
		p := f.refuse("confirm", invalid(fmt.Sprintf("type the topic's name, %s, to delete it", name)))
		c.drawTopic(w, r, p.Status, f, p)
		return
	}
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.cfg.API.DeleteTopic(r.Context(), cn, name); err != nil {
		p := f.refuse("", err)
		c.drawTopic(w, r, p.Status, f, p)
		return
	}
	redirect(w, r, "/topics", fmt.Sprintf("Topic %s deleted.", name))
}

// alterConfig handles a config row's form on the topic page: op=set sets
// the typed value, op=delete removes the topic's override (back to the
// broker's default).
func (c *Console) alterConfig(w http.ResponseWriter, r *http.Request) {
	f, ok := c.readForm(w, r, "")
	if !ok {
		return
	}
	key := f.Value("name")
	f.ID = "config:" + key
	var req api.AlterConfigsRequest
	var done string
	switch f.Value("op") {
	case "set":
		req.Set = map[string]string{key: f.Value("value")}
		done = fmt.Sprintf("%s set to %q.", key, f.Value("value"))
	case "delete":
		req.Delete = []string{key}
		done = fmt.Sprintf("The override of %s is deleted: the broker's default applies.", key)
	default:
		p := f.refuse("value", invalid(fmt.Sprintf("op must be set or delete, not %q", f.Value("op"))))
		c.drawTopic(w, r, p.Status, f, p)
		return
	}
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	if _, err := c.cfg.API.AlterTopicConfigs(r.Context(), cn, name, req); err != nil {
		p := f.refuse("value", err)
		c.drawTopic(w, r, p.Status, f, p)
		return
	}
	redirect(w, r, "/topics/"+url.PathEscape(name), done)
}

// produce handles the messages page's test-message form: key, value,
// headers as key=value lines and a partition (blank: the partitioner
// picks, by the key's hash). It redirects to the page that starts at the
// new record.
func (c *Console) produce(w http.ResponseWriter, r *http.Request) {
	f, ok := c.readForm(w, r, "produce")
	if !ok {
		return
	}
	fail := func(field string, err error) {
		p := f.refuse(field, err)
		c.drawMessages(w, r, p.Status, f, p)
	}
	var req api.ProduceRequest
	if v := strings.TrimSpace(f.Value("partition")); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			fail("partition", invalid(fmt.Sprintf("partition must be a whole number, 0 or more (blank to let the key choose), not %q", v)))
			return
		}
		p := int32(n)
		req.Partition = &p
	}
	if k := f.Value("key"); k != "" {
		req.Key = &k
	}
	value := f.Value("value")
	req.Value = &value
	headers, err := keyValueLines(f.Value("headers"), "headers")
	if err != nil {
		fail("headers", invalid(err.Error()))
		return
	}
	for _, kv := range headers {
		req.Headers = append(req.Headers, struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		}{kv[0], kv[1]})
	}
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	res, err := c.cfg.API.Produce(r.Context(), cn, r.PathValue("name"), req)
	if err != nil {
		field := ""
		if p := api.AsProblem(err); p.Status == http.StatusBadRequest && strings.Contains(p.Detail, "has no partition") {
			field = "partition"
		}
		fail(field, err)
		return
	}
	redirect(w, r, fmt.Sprintf("/topics/%s/partitions/%d?offset=%d", url.PathEscape(res.Topic), res.Partition, res.Offset),
		fmt.Sprintf("Produced to partition %d at offset %d.", res.Partition, res.Offset))
}

// deleteGroup handles the group page's delete form: the group's id must
// be typed again; a group with members is refused by Kafka (409).
func (c *Console) deleteGroup(w http.ResponseWriter, r *http.Request) {
	f, ok := c.readForm(w, r, "delete")
	if !ok {
		return
	}
	id := r.PathValue("id")
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var p *api.Problem
	if f.Value("confirm") != id {
		p = f.refuse("confirm", invalid(fmt.Sprintf("type the group's id, %s, to delete it", id)))
	} else if err := c.cfg.API.DeleteGroup(r.Context(), cn, id); err != nil {
		p = f.refuse("", err)
	} else {
		redirect(w, r, "/groups", fmt.Sprintf("Group %s deleted.", id))
		return
	}
	gp, err := c.groupData(r, cn)
	if err != nil {
		c.fail(w, r, p)
		return
	}
	gp.Form = f
	c.render(w, r, p.Status, "group", page{Title: "Group " + gp.Group, Nav: "groups", Error: p, Data: gp})
}
