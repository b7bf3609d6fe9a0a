package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/idem-dev/idem/internal/admin/api"
)

// Console lists show defaultPageSize rows a page unless ?limit= asks for
// another size; sizes past maxPageSize are lowered to it, so one request
// draws a bounded page however many topics or groups there are.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// pager is where a paged list stands, and draws its page links.
type pager struct {
	Page, Pages, Limit, Matching int
	// Contains is the filter box's text, kept in the page links.
	Contains string
}

// pageLink is one numbered link of a pager; Gap stands for pages left out.
type pageLink struct {
	Number  int
	Current bool
	Gap     bool
}

// readPager reads ?page=&limit=&contains=; a page or limit that is not a
// positive integer is a 400.
func readPager(q url.Values) (pager, error) {
	pg := pager{Page: 1, Limit: defaultPageSize, Contains: q.Get("contains")}
	for _, field := range []struct {
		name string
		dst  *int
	}{{"page", &pg.Page}, {"limit", &pg.Limit}} {
		name, dst := field.name, field.dst
		v := q.Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return pg, &api.Problem{Title: "Bad Request", Status: http.StatusBadRequest,
				Detail: fmt.Sprintf("%s must be a whole number, 1 or more, not %q", name, v)}
		}
		*dst = n
	}
	pg.Limit = min(pg.Limit, maxPageSize)
	return pg, nil
}

// options is the API's list selection for this page. Page numbers are
// turned into a skip over the sorted, filtered names; the API's cursor is
// for clients that walk a list, the console's numbers for people who jump.
func (pg pager) options() api.ListOptions {
	return api.ListOptions{Contains: pg.Contains, Skip: (pg.Page - 1) * pg.Limit, Limit: pg.Limit}
}

// of sets the page count once the number of matching rows is known.
func (pg pager) of(matching int) pager {
	pg.Matching = matching
	pg.Pages = max(1, (matching+pg.Limit-1)/pg.Limit)
	return pg
}

// cut returns the rows of rows on this page (for lists the API does not
// page, such as a topic's partitions) and the pager knowing their count.
func cut[T any](pg pager, rows []T) ([]T, pager) {
	pg = pg.of(len(rows))
	from := min((pg.Page-1)*pg.Limit, len(rows))
	return rows[from:min(from+pg.Limit, len(rows))], pg
}

// Href is the query of page n, keeping the size and the filter.
func (pg pager) Href(n int) string {
	q := url.Values{"page": {strconv.Itoa(n)}}
	if pg.Limit != defaultPageSize {
		q.Set("limit", strconv.Itoa(pg.Limit))
	}
	if pg.Contains != "" {
		q.Set("contains", pg.Contains)
	}
	return "?" + q.Encode()
}

// Links are the numbered page links: the first, the last, and three on
// each side of the current page, with gaps between.
func (pg pager) Links() []pageLink {
	var out []pageLink
	for n := 1; n <= pg.Pages; n++ {
		if n == 1 || n == pg.Pages || (n >= pg.Page-3 && n <= pg.Page+3) {
			out = append(out, pageLink{Number: n, Current: n == pg.Page})
		} else if len(out) > 0 && !out[len(out)-1].Gap {
			out = append(out, pageLink{Gap: true})
		}
	}
	return out
}

// filterBox is the filter form above a paged list (template "filter").
type filterBox struct {
	Action, What, Field string
	Pager               pager
}

// newFilterBox is the template function filter: the form that GETs action
// with contains and limit, labelled "Filter what" and "field contains".
func newFilterBox(action, what, field string, pg pager) filterBox {
	return filterBox{Action: action, What: what, Field: field, Pager: pg}
}

// Beyond says that the page asked for starts after the last row.
func (pg pager) Beyond() bool { return pg.Matching > 0 && (pg.Page-1)*pg.Limit >= pg.Matching }

// First and Last are the 1-based numbers of the first and last rows shown.
func (pg pager) First() int { return min((pg.Page-1)*pg.Limit+1, pg.Matching) }
func (pg pager) Last() int  { return min(pg.Page*pg.Limit, pg.Matching) }

func (c *Console) topics(w http.ResponseWriter, r *http.Request) {
	drawPaged(c, w, r, http.StatusOK, nil, form{}, topicsList)
}

// topicPage is the topic page's data: the topic, one page of its
// partitions, and the form last submitted (delete or a config's).
type topicPage struct {
	api.TopicDetail
	Shown []api.PartitionInfo
	Pager pager
	Form  form
}

// drawTopic draws the topic page with status, form f and problem p.
func (c *Console) drawTopic(w http.ResponseWriter, r *http.Request, status int, f form, p *api.Problem) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pg, err := readPager(r.URL.Query())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	t, err := c.cfg.API.Topic(r.Context(), cn, r.PathValue("name"))
	if err != nil {
		if p != nil { // the topic went away: show the form's problem anyway
			err = p
		}
		c.fail(w, r, err)
		return
	}
	tp := topicPage{TopicDetail: t, Form: f}
	tp.Shown, tp.Pager = cut(pg, t.Partitions)
	c.render(w, r, status, "topic", page{Title: "Topic " + t.Name, Nav: "topics", Error: p, Data: tp})
}

// Prev and Next are the neighbouring page numbers.
func (pg pager) Prev() int { return pg.Page - 1 }
func (pg pager) Next() int { return pg.Page + 1 }

// pagedList is a list page the API serves a page at a time: the template
// it is drawn with, its title and nav entry, and the API call.
type pagedList[T any] struct {
	name, title, nav string
	list             func(*api.Service, context.Context, *api.Conn, api.ListOptions) (api.ListPage[T], error)
}

// listRows is a paged list page's data: one page of rows, the pager, and
// the page's form as last submitted (the topics page's create form).
type listRows[T any] struct {
	Rows  []T
	Pager pager
	Form  form
}

var (
	topicsList       = pagedList[api.TopicSummary]{"topics", "Topics", "topics", (*api.Service).TopicsPage}
	groupsList       = pagedList[api.GroupSummary]{"groups", "Consumer groups", "groups", (*api.Service).GroupsPage}
	transactionsList = pagedList[api.Transaction]{"transactions", "Transactions", "transactions", (*api.Service).TransactionsPage}
	shareGroupsList  = pagedList[api.ShareGroup]{"share-groups", "Share groups", "share", (*api.Service).ShareGroupsPage}
)

// pagedPage serves list: ?page=&limit=&contains= choose the rows, and only
// those are drawn from the API (and described by the broker).
func pagedPage[T any](c *Console, l pagedList[T]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		drawPaged(c, w, r, http.StatusOK, nil, form{}, l)
	}
}

// drawPaged draws one page of l with status, the problem p (nil on a plain
// GET; an action's failure otherwise) and the form f as submitted.
func drawPaged[T any](c *Console, w http.ResponseWriter, r *http.Request, status int, p *api.Problem, f form, l pagedList[T]) {
	cn, err := c.conn(r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pg, err := readPager(r.URL.Query())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	rows, err := l.list(c.cfg.API, r.Context(), cn, pg.options())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, status, l.name, page{Title: l.title, Nav: l.nav, Error: p,
		Data: listRows[T]{Rows: rows.Items, Pager: pg.of(rows.Matching), Form: f}})
}
