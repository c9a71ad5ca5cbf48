package config

// plan reads dry_run: check everything and say what a deploy would change, writing nothing. With
// remove_tag there is nothing to plan but the removal, which the step would make at once.
func (p *parser) plan() {
	if v := p.input("dry_run"); v != "" {
		p.c.DryRun = p.boolean("dry_run", v)
	}
	if p.c.DryRun && p.c.RemoveTag != "" {
		p.fail("dry_run", "true", "dry_run plans a deploy; remove_tag deploys nothing: leave dry_run unset in the step that removes a tag")
	}
}
