DROP TRIGGER IF EXISTS {{.Name "_notify_trg"}} ON {{.Table}};
DROP FUNCTION IF EXISTS {{.Sibling "_notify"}}();
